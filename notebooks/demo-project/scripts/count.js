// A Node.js script: ipyrunner picks the interpreter from the extension.
const total = 5;
console.log(`counting to ${total} with node ${process.version}`);
let n = 0;
const timer = setInterval(() => {
  n += 1;
  console.log(`  ${n}`);
  if (n === total) {
    clearInterval(timer);
    console.log("done");
  }
}, 100);
