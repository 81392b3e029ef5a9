"use strict";
// Runs one JavaScript stage: `node node_stage.js CELL_FILE NAME`.
//
// The same protocol as python_stage.py: the input arrives as JSON on stdin;
// exactly one envelope leaves on the descriptor named by IPYRUNNER_RESULT_FD,
// so whatever the cell prints never touches the result:
//   {"ipyrunner": 1, "ok": true, "value": VALUE}
//   {"ipyrunner": 1, "ok": false, "error": {"type", "message", "traceback"}}
// Exit status 0 after an ok envelope, 1 after an error envelope. A cell that
// ends the process itself (process.exit) leaves no envelope on purpose.
// CommonJS, no packages: it runs on any node without ipyrunner installed.
//
// Numbers: JSON.parse turns every number into a double, so an integer beyond
// 2**53 in the input loses precision before the cell sees it. That is the
// language's JSON, not something this wrapper can fix. On the way out,
// JSON.stringify would write NaN and Infinity as null: a result holding one is
// refused instead (ResultNotJSON, naming its path), as in the other languages.
//
// The result channel belongs to this process: node cannot fork itself, and
// the descriptor is reopened close-on-exec (ownedChannel), so no program the
// cell runs inherits it.

const fs = require("fs");
const path = require("path");
const vm = require("vm");
const { createRequire } = require("module");

const PROTOCOL = 1;
const HINT = "return plain objects, arrays, strings, finite numbers, booleans or null";

// The first value JSON cannot hold, as [path, kind], or null. JSON.stringify
// would not complain: it drops undefined/functions/symbols, turns NaN and
// Infinity into null, a Map or Set into {}, a Date into a string and throws a
// bare TypeError on BigInt or a cycle. The result is checked strictly instead,
// the same way python_stage.unserializable does, paths written the same way.
function unserializable(value, where) {
  const stack = [[value, where, false]];
  const open = new Set(); // containers on the path being walked: a cycle, not mere sharing
  while (stack.length > 0) {
    const [item, at, leaving] = stack.pop();
    if (leaving) {
      open.delete(item);
      continue;
    }
    const kind = kindOf(item);
    if (kind === null) continue;
    if (kind !== "array" && kind !== "object") return [at, kind];
    if (open.has(item)) return [at, "circular reference"];
    open.add(item);
    stack.push([item, at, true]);
    const children = [];
    if (kind === "array") {
      for (let i = 0; i < item.length; i++) {
        if (!(i in item)) return [`${at}[${i}]`, "hole in a sparse array"];
        children.push([item[i], `${at}[${i}]`, false]);
      }
    } else {
      for (const sym of Object.getOwnPropertySymbols(item)) {
        if (Object.prototype.propertyIsEnumerable.call(item, sym)) {
          return [`${at}[${String(sym)}]`, "key of type symbol"];
        }
      }
      for (const key of Object.keys(item)) {
        children.push([item[key], `${at}[${JSON.stringify(key)}]`, false]);
      }
    }
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]);
  }
  return null;
}

// null for a JSON scalar, "array" / "object" for a JSON container, else a type name.
function kindOf(item) {
  switch (typeof item) {
    case "string":
    case "boolean":
      return null;
    case "number":
      return Number.isFinite(item) ? null : `non-finite number (${item})`;
    case "object": {
      if (item === null) return null;
      if (Array.isArray(item)) return "array";
      const proto = Object.getPrototypeOf(item);
      // Plain: {...}, Object.create(null), or an object from another vm context.
      if (proto === null || Object.getPrototypeOf(proto) === null) return "object";
      const ctor = proto.constructor;
      const name = typeof ctor === "function" && typeof ctor.name === "string" ? ctor.name : "";
      return name && name !== "Object" ? name : "object with a custom prototype";
    }
    default:
      return typeof item; // bigint, function, symbol, undefined
  }
}

function error(type, message, traceback = "") {
  return { ipyrunner: PROTOCOL, ok: false, error: { type, message, traceback } };
}

function success(value) {
  if (value === undefined) value = null; // `return;` or no return at all
  const found = unserializable(value, "result");
  if (found === null) return { ipyrunner: PROTOCOL, ok: true, value };
  const [where, kind] = found;
  return error("ResultNotJSON", `${where} is a ${kind}, which JSON cannot hold; ${HINT}`);
}

function safeString(value) {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

// The stack lines of the cell's own frames, each followed by its source line.
function cellFrames(stack, filename, lines) {
  if (typeof stack !== "string") return "";
  const marker = `${filename}:`;
  const out = [];
  let previous = null;
  let repeats = 0;
  const flush = () => {
    if (repeats > 0) out.push(`    [previous frame repeated ${repeats} more times]`);
    repeats = 0;
  };
  for (const line of stack.split("\n")) {
    if (!/^\s*at /.test(line) || !line.includes(marker)) continue;
    const frame = line.trim();
    if (frame === previous) {
      repeats += 1;
      continue;
    }
    flush();
    previous = frame;
    out.push(`    ${frame}`);
    const at = line.slice(line.lastIndexOf(marker) + marker.length).match(/^(\d+):\d+/);
    const source = at ? lines[Number(at[1]) - 1] : undefined;
    if (source !== undefined && source.trim() !== "") out.push(`        ${source.trim()}`);
  }
  flush();
  return out.length > 0 ? `${out.join("\n")}\n` : "";
}

// An exception thrown by the cell (or a value it threw) as an error envelope.
function failure(err, filename, lines) {
  if (err !== null && typeof err === "object" && typeof err.message === "string") {
    const name = typeof err.name === "string" ? err.name : "";
    let ctor = "";
    try {
      const c = Object.getPrototypeOf(err)?.constructor;
      ctor = typeof c === "function" && typeof c.name === "string" ? c.name : "";
    } catch {
      ctor = "";
    }
    // `class Oops extends Error {}` keeps name "Error": its class says more.
    const type = name && name !== "Error" ? name : ctor && ctor !== "Object" ? ctor : "Error";
    return error(type, err.message, cellFrames(err.stack, filename, lines));
  }
  return error("Error", safeString(err)); // throw "text", throw 42, ...
}

// A compile error: V8 puts "<stage NAME>:LINE", the line and a caret at the
// head of the stack, the way Python's SyntaxError shows the offending line.
function syntaxFailure(err, filename) {
  const stack = typeof err.stack === "string" ? err.stack : "";
  const head = stack.split("\n\n")[0];
  const at = head.startsWith(`${filename}:`) ? head.slice(filename.length + 1).match(/^\d+/) : null;
  if (at === null) return error(err.name || "SyntaxError", String(err.message));
  return error(err.name || "SyntaxError", `${err.message} (line ${at[0]})`, `${head}\n`);
}

function isThenable(value) {
  return (
    value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof value.then === "function"
  );
}

async function run(cellFile, name) {
  const filename = `<stage ${name}>`;
  let input;
  try {
    input = JSON.parse(fs.readFileSync(0, "utf8")); // all of stdin before the cell runs
  } catch (err) {
    return error("InputNotJSON", `the input on stdin is not JSON: ${failure(err).error.message}`);
  }
  const code = fs.readFileSync(cellFile, "utf8");
  const lines = code.split(/\r?\n/);
  let script;
  try {
    const options = { filename };
    const loader = vm.constants && vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER;
    // import() in the cell (node prints an ExperimentalWarning when a cell uses it)
    if (loader !== undefined) options.importModuleDynamically = loader;
    script = new vm.Script(code, options);
  } catch (err) {
    return syntaxFailure(err, filename);
  }
  // What a CommonJS file would have; require resolves from the cell's directory.
  const cellPath = path.resolve(cellFile);
  const cellModule = { exports: {}, filename: cellPath, id: filename };
  globalThis.require = createRequire(cellPath);
  globalThis.module = cellModule;
  globalThis.exports = cellModule.exports;
  globalThis.__filename = cellPath;
  globalThis.__dirname = path.dirname(cellPath);
  process.argv = [process.argv[0], filename];
  try {
    script.runInThisContext();
    // A separate script sees the cell's global bindings: `function execute`
    // and `var execute` (properties of globalThis) as well as a top-level
    // `const/let execute` (the global lexical scope, never on globalThis),
    // without touching the cell's text or its line numbers.
    const execute = vm.runInThisContext("typeof execute === 'undefined' ? undefined : execute", {
      filename: "<ipyrunner>",
    });
    if (typeof execute !== "function") {
      return error("NameError", "the cell defines no function execute(input)");
    }
    let value = execute(input);
    if (isThenable(value)) value = await value;
    return success(value); // inside the try: a throwing getter is the cell's error
  } catch (err) {
    return failure(err, filename, lines);
  }
}

let resultFd = -1;
let displayFd = -1;
let finished = false;
let cellLines = [];
let cellFilename = "<stage>";

function writeAll(fd, buffer) {
  let offset = 0;
  while (offset < buffer.length) {
    try {
      offset += fs.writeSync(fd, buffer, offset, buffer.length - offset);
    } catch (err) {
      if (err.code !== "EAGAIN") throw err; // a non-blocking pipe that is full: wait a little
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  }
}

// display(bundle, metadata): show a MIME bundle ({"text/html": ..., "image/png":
// base64 text or a Buffer}) in the notebook, as python_stage.py's display does:
// one frame on IPYRUNNER_DISPLAY_FD (a 4-byte length, then JSON), then wait
// for the kernel's one-byte answer, so what was printed before shows before it.
// The kernel checks every frame; a string shows as text.
function display(bundle, metadata = {}) {
  const given = bundle !== null && typeof bundle === "object" ? bundle : { "text/plain": safeString(bundle) };
  const data = {};
  for (const [mime, value] of Object.entries(given)) {
    data[mime] = value instanceof Uint8Array ? Buffer.from(value).toString("base64") : value;
  }
  if (displayFd < 0) {
    process.stdout.write(`${typeof data["text/plain"] === "string" ? data["text/plain"] : "<a display>"}\n`);
    return;
  }
  const body = Buffer.from(JSON.stringify({ data, metadata }), "utf8");
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  writeAll(displayFd, Buffer.concat([head, body]));
  const answer = Buffer.alloc(1);
  for (;;) {
    try {
      if (fs.readSync(displayFd, answer, 0, 1, null) >= 0) return;
    } catch (err) {
      if (err.code !== "EAGAIN") return; // the kernel is gone: nothing to show it to
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  }
}

// libuv marks only the first inherited descriptors close-on-exec at startup;
// a higher one (a Jupyter kernel holds many) would pass into every program
// the cell spawns. Reopened through /proc it is a descriptor of node's own,
// which libuv always opens with O_CLOEXEC. O_NONBLOCK: never wait for a
// reader that is gone (writeAll copes with a full pipe).
function ownedChannel(fd) {
  try {
    if (!fs.fstatSync(fd).isFIFO()) return fd; // reopening a file would lose its offset
  } catch {
    return fd; // not open: finish() reports it
  }
  const flags = fs.constants.O_WRONLY | fs.constants.O_NONBLOCK;
  for (const where of [`/proc/self/fd/${fd}`, `/dev/fd/${fd}`]) {
    try {
      const own = fs.openSync(where, flags);
      fs.closeSync(fd);
      return own;
    } catch {
      // no /proc here: try the next way, else keep fd as it is
    }
  }
  return fd;
}

function finish(envelope) {
  if (finished) return;
  finished = true;
  let text;
  try {
    text = JSON.stringify(envelope);
  } catch (err) {
    // e.g. nesting too deep for JSON.stringify's recursion
    envelope = error("ResultNotJSON", `result could not be encoded: ${failure(err).error.message}`);
    text = JSON.stringify(envelope);
  }
  try {
    writeAll(resultFd, Buffer.from(text, "utf8"));
    fs.closeSync(resultFd);
  } catch (err) {
    process.stderr.write(`ipyrunner: cannot write the result: ${err.message}\n`);
    process.exitCode = 1;
    return;
  }
  // No process.exit(): stdout and stderr may still be flushing.
  process.exitCode = envelope.ok ? 0 : 1;
}

// A throw in a callback (setTimeout, an unawaited promise) while execute's
// promise is pending is the stage's failure; after the result it is only shown.
function onUncaught(err, origin) {
  if (!finished) {
    finish(failure(err, cellFilename, cellLines));
    return;
  }
  const what = origin === "unhandledRejection" ? "Unhandled rejection" : "Uncaught exception";
  const detail = err !== null && typeof err === "object" && err.stack ? err.stack : safeString(err);
  process.stderr.write(`${what} after the result was sent:\n${detail}\n`);
}

// The event loop ran dry while execute's promise was still pending: nothing
// can settle it any more. (Not emitted on process.exit(), which stays silent.)
function onBeforeExit() {
  if (!finished) {
    finish(error("UnsettledPromise", "execute returned a promise that never settled"));
  }
}

async function main() {
  const [cellFile, name] = process.argv.slice(2);
  const fdText = process.env.IPYRUNNER_RESULT_FD;
  const displayText = process.env.IPYRUNNER_DISPLAY_FD;
  delete process.env.IPYRUNNER_RESULT_FD; // the cell and its children never see it
  delete process.env.IPYRUNNER_DISPLAY_FD;
  if (/^\d+$/.test(displayText || "")) displayFd = Number(displayText);
  globalThis.display = display;
  if (cellFile === undefined || name === undefined || !/^\d+$/.test(fdText || "")) {
    process.stderr.write(
      "usage: IPYRUNNER_RESULT_FD=N node node_stage.js CELL_FILE NAME (N: an open, writable fd)\n",
    );
    process.exitCode = 2;
    return;
  }
  resultFd = ownedChannel(Number(fdText));
  cellFilename = `<stage ${name}>`;
  try {
    cellLines = fs.readFileSync(cellFile, "utf8").split(/\r?\n/);
  } catch {
    cellLines = []; // run() reports the unreadable file
  }
  process.on("uncaughtException", onUncaught);
  process.on("beforeExit", onBeforeExit);
  finish(await run(cellFile, name));
}

if (require.main === module) {
  main().catch((err) => finish(failure(err, cellFilename, cellLines)));
}

module.exports = { unserializable }; // for tests, like python_stage.unserializable
