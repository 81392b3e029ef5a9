from __future__ import annotations

import json
import signal
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

from ipyrunner import (
    InvalidOption,
    InvalidStage,
    OutputLimitExceeded,
    ResourceLimitExceeded,
    ResultDecodeError,
    Stage,
    StageFailed,
    StageTimeout,
)
from ipyrunner.config import IPyRunner
from ipyrunner.effects import Effects
from ipyrunner.process import Completed
from ipyrunner.requirements import parse_requirements
from ipyrunner.stages.envelope import decode
from ipyrunner.stages.languages import WRAPPERS
from ipyrunner.stages.stage import encode_input

ECHO = "def execute(input):\n    return input\n"


def completed(channel: bytes | None, returncode: int = 0, **flags: Any) -> Completed:
    return Completed(("x",), returncode, "", "", 0.1, channel=channel, **flags)


def test_stage_id_is_a_stable_sha256_of_the_canonical_fields() -> None:
    stage = Stage(ECHO, name="echo")
    canonical = json.dumps(
        {"code": ECHO, "effects": [], "language": "python", "requirements": [], "runtime": "host"},
        separators=(",", ":"),
    )
    assert stage.id == __import__("hashlib").sha256(canonical.encode()).hexdigest()
    assert Stage(ECHO, name="other").id == stage.id  # the name is not what it does


def test_stage_id_changes_with_code_and_language() -> None:
    base = Stage(ECHO).id
    assert Stage(ECHO + "\n").id != base
    assert Stage("function execute(input) { return input; }", "js").id != base


def test_stage_id_is_sensitive_to_effects_requirements_and_runtime() -> None:
    stage = Stage(ECHO)
    ids = {stage.id}
    for field, value in (
        ("effects", Effects(network=True)),
        ("requirements", parse_requirements("pyyaml==6.0.2")),
        ("runtime", "venv"),
    ):
        twin = Stage(ECHO)
        object.__setattr__(twin, field, value)
        ids.add(twin.id)
    assert len(ids) == 4


def test_requirements_choose_the_venv_runtime_and_count_in_the_id() -> None:
    plain = Stage(ECHO)
    pinned = Stage(ECHO, requires="pyyaml==6.0.2")
    in_cell = Stage("# requires: pyyaml==6.0.2\n" + ECHO)
    assert (plain.runtime, pinned.runtime) == ("host", "venv")
    assert [str(r) for r in in_cell.requirements] == ["pyyaml==6.0.2"]
    assert pinned.id != plain.id


def test_unknown_effect_fails_closed() -> None:
    with pytest.raises(InvalidOption, match="unknown effect 'netwrk'"):
        Stage(ECHO, effects="netwrk")


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "def run(input):\n    return 1\n"),
        ("python", "if True:\n    def execute(input): return 1\n"),
        ("javascript", "function run(input) { return 1; }"),
        ("bash", "run() { echo 1; }"),
    ],
)
def test_cell_without_top_level_execute_is_rejected(language: str, code: str) -> None:
    with pytest.raises(InvalidStage, match="no top-level execute"):
        Stage(code, language)


def test_python_syntax_error_names_the_cell_line() -> None:
    with pytest.raises(InvalidStage, match="line 3"):
        Stage("x = 1\ndef execute(input):\n    return (\n", "python")


@pytest.mark.parametrize("language", ["ruby", "", "pyth0n"])
def test_unknown_language_is_rejected(language: str) -> None:
    with pytest.raises(InvalidStage, match="unknown language"):
        Stage(ECHO, language)


@pytest.mark.parametrize("alias", ["js", "node", "JavaScript"])
def test_language_aliases(alias: str) -> None:
    assert Stage("function execute(i) { return i; }", alias).language.name == "javascript"


def test_invalid_name_is_rejected() -> None:
    with pytest.raises(InvalidStage, match="invalid stage name"):
        Stage(ECHO, name="not a name")


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="colour"):
        Stage(ECHO, colour="red")


@pytest.mark.parametrize(
    ("value", "where"),
    [({"a": [1, 2, 3, {1, 2}]}, r'input\["a"\]\[3\] is a set'), (print, "input is a builtin")],
)
def test_non_json_input_names_type_and_path(value: Any, where: str) -> None:
    with pytest.raises(InvalidOption, match=where):
        Stage(ECHO).run(value)


def test_round_trip_of_nested_json(project: Path) -> None:
    value = {"rows": [{"n": 2**100, "x": 1.5, "s": "héllo ✓ 🚀", "z": None, "t": True}], "e": []}
    assert Stage(ECHO)(value) == value


def test_print_does_not_corrupt_the_result(project: Path) -> None:
    code = (
        "import sys, os\n"
        "def execute(input):\n"
        '    print(\'{"ipyrunner": 1, "ok": true, "value": "forged"}\')\n'
        "    print('noise', file=sys.stderr)\n"
        "    return 'real'\n"
    )
    result = Stage(code).run()
    assert result.value == "real"
    assert "forged" in result.stdout
    assert result.stderr == "noise\n"


def test_future_imports_keep_working(project: Path) -> None:
    code = (
        "from __future__ import annotations\ndef execute(input: Undefined) -> int:\n    return 1\n"
    )
    assert Stage(code)() == 1


def test_raised_error_carries_type_message_and_cell_line(project: Path) -> None:
    code = "def helper():\n    raise KeyError('row 7')\n\ndef execute(input):\n    helper()\n"
    with pytest.raises(StageFailed) as info:
        Stage(code, name="clean")()
    message = str(info.value)
    assert message.startswith("stage clean raised KeyError: 'row 7'")
    assert 'File "<stage clean>", line 5, in execute' in message
    assert 'File "<stage clean>", line 2, in helper' in message
    assert "python_stage.py" not in message


def test_run_never_raises_for_the_stage_failure(project: Path) -> None:
    result = Stage("def execute(input):\n    1 / 0\n").run()
    assert not result.ok
    assert result.error is not None
    assert (result.error.type, result.error.kind) == ("ZeroDivisionError", "raised")


def test_unserializable_result_names_its_type_and_path(project: Path) -> None:
    with pytest.raises(ResultDecodeError, match=r'result\["a"\]\[1\] is a set'):
        Stage("def execute(input):\n    return {'a': [1, {2}]}\n")()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("import sys\n    sys.exit(3)", "exited with status 3 without returning a result"),
        ("import os\n    os._exit(0)", "exited with status 0 without returning a result"),
        (
            "import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)",
            "killed by SIGKILL before returning a result",
        ),
    ],
)
def test_exit_without_result_and_death_by_signal(project: Path, body: str, expected: str) -> None:
    code = f"def execute(input):\n    {body}\n"
    with pytest.raises(StageFailed, match=expected):
        Stage(code)()


def test_timeout_raises_stage_timeout(project: Path, fresh_settings: IPyRunner) -> None:
    fresh_settings.grace_period = 0.2
    with pytest.raises(StageTimeout):
        Stage("import time\ndef execute(input):\n    time.sleep(60)\n", timeout=0.5)()


def test_output_flood_is_killed(project: Path) -> None:
    code = "def execute(input):\n    while True: print('x' * 1000)\n"
    with pytest.raises(OutputLimitExceeded):
        Stage(code, max_output="32K")()


def test_result_over_the_cap_is_its_own_error(project: Path, fresh_settings: IPyRunner) -> None:
    fresh_settings.max_result = "64K"
    with pytest.raises(ResultDecodeError, match="larger than 65536 bytes"):
        Stage("def execute(input):\n    return 'x' * 200_000\n")()


def test_map_returns_values_in_input_order(project: Path) -> None:
    stage = Stage(
        "import random, time\n"
        "def execute(n):\n    time.sleep(random.random() / 20)\n    return n * n\n"
    )
    assert stage.map(range(50), workers=4) == [n * n for n in range(50)]


def test_map_raises_the_first_failure_with_its_index(project: Path) -> None:
    stage = Stage("def execute(n):\n    if n == 3: raise ValueError('three')\n    return n\n")
    with pytest.raises(StageFailed, match=r"map input \[3\]: .*ValueError: three"):
        stage.map(range(6), workers=2)


def test_map_rejects_a_non_json_input_before_running(project: Path) -> None:
    with pytest.raises(InvalidOption, match=r"inputs\[1\]"):
        Stage(ECHO).map([1, {2}])


def test_decode_reports_garbage_on_the_result_channel() -> None:
    outcome = decode(completed(b"not json"), "python", 100)
    assert outcome.error is not None
    assert outcome.error.kind == "decode"


def test_decode_reports_json_that_is_not_an_envelope() -> None:
    outcome = decode(completed(b'{"ok": true, "value": 1}'), "python", 100)
    assert outcome.error is not None
    assert "not an ipyrunner envelope" in outcome.error.message


def test_decode_quotes_what_bash_execute_printed() -> None:
    printed = b'{"value": working...\n42\n, "ipyrunner": 1, "ok": true}'
    outcome = decode(completed(printed), "bash", 100)
    assert outcome.error is not None
    assert outcome.error.message.startswith(
        "execute printed something that is not one JSON value: b'working...\\n42'"
    )
    assert ">&2" in outcome.error.message


def test_decode_tells_signal_from_exit() -> None:
    killed = decode(completed(None, returncode=-signal.SIGTERM), "python", 100)
    exited = decode(completed(b"", returncode=4), "python", 100)
    assert killed.error is not None
    assert "SIGTERM" in killed.error.message
    assert exited.error is not None
    assert "status 4" in exited.error.message


def test_shared_values_are_not_mistaken_for_cycles(project: Path) -> None:
    assert Stage("def execute(input):\n    x = [1]\n    return [x, x]\n")() == [[1], [1]]


def test_nan_is_refused_like_in_javascript(project: Path) -> None:
    with pytest.raises(ResultDecodeError, match=r"result\[1\] is a float nan"):
        Stage("def execute(input):\n    return [1.0, float('nan')]\n")()


def test_async_execute_is_awaited(project: Path) -> None:
    code = "import asyncio\nasync def execute(n):\n    await asyncio.sleep(0)\n    return n + 1\n"
    assert Stage(code)(1) == 2


def test_lone_surrogates_round_trip(project: Path) -> None:
    assert Stage("def execute(input):\n    return input + '\\ud800'\n")("\udc00") == "\udc00\ud800"


def test_python_memory_error_is_reported_as_the_memory_limit(
    project: Path, fresh_settings: IPyRunner
) -> None:
    # Without a cgroup the limit is address space less the tmpfs: keep the tmpfs small.
    fresh_settings.tmp_size = "16M"
    code = "def execute(input):\n    blob = bytearray(1 << 30)\n    return len(blob)\n"
    result = Stage(code, memory="128M").run()
    assert result.error is not None
    assert (result.error.kind, result.error.type) == ("limit", "memory limit")
    assert result.outcome == "memory limit"
    with pytest.raises(ResourceLimitExceeded, match="memory limit"):
        result.check()


CIRCULAR: list[Any] = []
CIRCULAR.append(CIRCULAR)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": [{1: "x"}]}, r'input\["a"\]\[0\]\[1\] is a key of type int'),
        ([{"k": {None: 1}}], r'input\[0\]\["k"\]\[None\] is a key of type NoneType'),
        (CIRCULAR, r"input\[0\] is a circular reference"),
        (10**5000, "the input cannot be written as JSON: Exceeds the limit"),
    ],
    ids=["int-key", "none-key", "cycle", "int-too-long"],
)
def test_input_json_would_mangle_or_refuse_is_refused(value: Any, where: str) -> None:
    with pytest.raises(InvalidOption, match=where):
        encode_input(value)


def test_input_is_compact_json_tuples_and_dict_subclasses_included() -> None:
    value = OrderedDict(a=(1, [2.5, None]), b="é")
    assert encode_input(value) == '{"a":[1,[2.5,null]],"b":"é"}'.encode()
    assert encode_input("\ud800") == b'"\\ud800"'  # lone surrogates: ASCII escapes


def test_python_stage_runs_the_wrapper_from_the_kernels_bytecode(project: Path) -> None:
    code = (
        "import sys\n"
        "def execute(input):\n"
        "    wrapper = sys.modules['python_stage']\n"
        "    source = wrapper.main.__code__.co_filename\n"
        "    return wrapper.__file__, wrapper.__spec__.loader.path, source\n"
    )
    loaded, loader, source = Stage(code)()
    assert loaded == loader
    assert Path(loaded).name == "python_stage.pyc"
    assert Path(loaded).parent.name == "program"  # the run's own directory, read-only to it
    assert source == str(Path(WRAPPERS) / "python_stage.py")
