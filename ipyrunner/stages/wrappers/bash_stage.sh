#!/usr/bin/env bash
# Runs one bash stage: `bash bash_stage.sh CELL_FILE NAME`.
#
# The same protocol as python_stage.py: the input arrives as JSON on stdin;
# exactly one envelope leaves on the descriptor named by IPYRUNNER_RESULT_FD:
#   {"value": VALUE, "ipyrunner": 1, "ok": true}
#   {"ipyrunner": 1, "ok": false, "error": {"type", "message", "traceback"}}
# Exit status 0 after an ok envelope, 1 after an error envelope; a cell that
# runs `exit` at its top level ends everything and leaves no envelope.
#
# The cell defines a function `execute` that gets the JSON input as $1 and
# prints its JSON result on stdout: that stdout *is* the result, so messages
# for the display go to stderr (>&2). The output is embedded raw, unparsed
# (no jq, no python here); the kernel validates it as strict JSON (no NaN,
# Infinity or number beyond a double's range). It comes first in the envelope
# so that our own "ipyrunner" and "ok" keys come last and win if the output
# smuggles in keys of its own.
#
# Everything here is prefixed __ipyrunner_ because the cell runs in this shell.
# Sourcing this file (the tests do) only defines the functions.

__ipyrunner_json=''
__ipyrunner_envelope=''
__ipyrunner_ok=0
# Ends what execute printed, followed by its last failure (see __ipyrunner_on_exit).
__ipyrunner_mark=$'\x1e[ipyrunner: execute ended]\x1f'
__ipyrunner_err_key='' __ipyrunner_err_line='' __ipyrunner_err_cmd='' __ipyrunner_err_trace=''

# __ipyrunner_json_string TEXT: sets __ipyrunner_json to TEXT as a JSON string.
# Byte-wise (LC_ALL=C), so UTF-8 text passes through untouched.
__ipyrunner_json_string() {
    local LC_ALL=C s=$1 c hex i
    s=${s//'\'/'\\'}
    s=${s//'"'/'\"'}
    s=${s//$'\n'/'\n'}
    s=${s//$'\t'/'\t'}
    s=${s//$'\r'/'\r'}
    s=${s//$'\b'/'\b'}
    s=${s//$'\f'/'\f'}
    if [[ $s == *[[:cntrl:]]* ]]; then # the rest of U+0001..U+001F (DEL may stay raw)
        for ((i = 1; i < 32; i++)); do
            printf -v hex '%02x' "$i"
            printf -v c "\\x$hex"
            if [[ $s == *"$c"* ]]; then
                s=${s//"$c"/"\\u00$hex"}
            fi
        done
    fi
    __ipyrunner_json="\"$s\""
}

# __ipyrunner_error TYPE MESSAGE [TRACEBACK]: sets the error envelope.
__ipyrunner_error() {
    local type message
    __ipyrunner_json_string "$1"
    type=$__ipyrunner_json
    __ipyrunner_json_string "$2"
    message=$__ipyrunner_json
    __ipyrunner_json_string "${3-}"
    __ipyrunner_envelope="{\"ipyrunner\": 1, \"ok\": false, \"error\": {\"type\": $type, \"message\": $message, \"traceback\": $__ipyrunner_json}}"
    __ipyrunner_ok=0
}

# Writes the envelope, closes the channel and exits with 0 (ok) or 1 (error).
# Only the wrapper's own shell delivers: a subshell of the cell that calls this
# leaves quietly, whatever descriptors it still holds.
__ipyrunner_send() {
    if [[ $BASHPID != "$__ipyrunner_pid" ]]; then exit $((!__ipyrunner_ok)); fi
    if ! printf '%s' "$__ipyrunner_envelope" >&"$__ipyrunner_fd"; then
        printf 'ipyrunner: cannot write the result to fd %s\n' "$__ipyrunner_fd" >&2
        exit 1
    fi
    exec {__ipyrunner_fd}>&-
    if ((__ipyrunner_ok)); then exit 0; else exit 1; fi
}

# The ERR trap inside execute's subshell: __ipyrunner_on_err LINENO BASH_COMMAND.
# FUNCNAME/BASH_SOURCE[1..] is the stack of the failing command; only failures
# in the cell's own lines are recorded, with the cell frames as a traceback.
__ipyrunner_on_err() {
    local i line key='' trace=''
    [[ ${BASH_SOURCE[1]-} == "$__ipyrunner_cell" ]] || return 0
    for ((i = ${#FUNCNAME[@]} - 1; i >= 1; i--)); do
        if ((i == 1)); then line=$1; else line=${BASH_LINENO[i - 1]}; fi
        key+="${BASH_SOURCE[i]}:$line:${FUNCNAME[i]}"$'\x1f'
        if [[ ${BASH_SOURCE[i]} == "$__ipyrunner_cell" ]]; then
            trace+="  File \"<stage $__ipyrunner_name>\", line $line, in ${FUNCNAME[i]}"$'\n'
        fi
    done
    # A function whose last command failed fails at its call site too, with
    # the same BASH_COMMAND: keep the deeper record, like a traceback would.
    if [[ $2 == "$__ipyrunner_err_cmd" && $__ipyrunner_err_key == "$key"?* ]]; then
        return 0
    fi
    __ipyrunner_err_key=$key __ipyrunner_err_line=$1 __ipyrunner_err_cmd=$2
    __ipyrunner_err_trace="$trace    $2"$'\n'
}

# The EXIT trap of execute's subshell: its variables die with it, so the last
# failure travels out on its stdout, after a mark that ends the result.
__ipyrunner_on_exit() {
    printf '%s%s\x1f%s\x1f%s' "$__ipyrunner_mark" \
        "$__ipyrunner_err_line" "$__ipyrunner_err_cmd" "$__ipyrunner_err_trace"
}

if [[ ${BASH_SOURCE[0]} != "$0" ]]; then
    return 0
fi

if (($# != 2)) || [[ ! ${IPYRUNNER_RESULT_FD-} =~ ^[0-9]+$ ]]; then
    printf 'usage: IPYRUNNER_RESULT_FD=N bash bash_stage.sh CELL_FILE NAME (N: an open, writable fd)\n' >&2
    exit 2
fi
declare -r __ipyrunner_fd=$IPYRUNNER_RESULT_FD __ipyrunner_cell=$1 __ipyrunner_name=$2
declare -r __ipyrunner_pid=$BASHPID
unset IPYRUNNER_RESULT_FD # the cell and its children never see it

# All of stdin before the cell runs. Kept as text: bash never parses it, so
# big integers and everything else reach execute exactly as sent.
if [[ -r /dev/stdin ]]; then
    __ipyrunner_input=$(</dev/stdin)
else
    IFS= read -r -d '' __ipyrunner_input || :
fi

# Parse the whole cell before running any of it, as Python's compile() does:
# `source` would run the lines above a syntax error and then carry on.
# extglob on, since a cell may enable it at its top before using it.
if ! __ipyrunner_syntax=$("$BASH" -n -O extglob "$__ipyrunner_cell" 2>&1); then
    __ipyrunner_syntax=${__ipyrunner_syntax//"$__ipyrunner_cell: "/"<stage $__ipyrunner_name>: "}
    __ipyrunner_first=${__ipyrunner_syntax%%$'\n'*}
    __ipyrunner_message=${__ipyrunner_first#"<stage $__ipyrunner_name>: "}
    if [[ $__ipyrunner_message =~ ^line\ ([0-9]+):\ (.*)$ ]]; then
        __ipyrunner_message="${BASH_REMATCH[2]} (line ${BASH_REMATCH[1]})"
    fi
    __ipyrunner_error SyntaxError "$__ipyrunner_message" "$__ipyrunner_syntax"$'\n'
    __ipyrunner_send
fi

BASH_ARGV0="<stage $__ipyrunner_name>" # $0, like sys.argv[0] in a Python stage
set --                                  # no stray positional parameters at the top
# Sourced in this shell, so errors and $LINENO name the cell's own lines; the
# result fd is closed for the duration, so no command of the cell inherits it.
eval "source \"\$__ipyrunner_cell\" $__ipyrunner_fd>&-"

# The cell's top level may have set -e/-u/-x: keep them for execute only.
{ __ipyrunner_flags=$-; set +eux; } 2>/dev/null
trap - ERR

if ! declare -F execute >/dev/null; then
    __ipyrunner_error NameError "the cell defines no function execute(input)"
    __ipyrunner_send
fi

__ipyrunner_out=$(
    exec {__ipyrunner_fd}>&-
    # (stderr of the handlers goes nowhere: a cell's `set -x` would trace them)
    trap '{ __ipyrunner_on_err "$LINENO" "$BASH_COMMAND"; } 2>/dev/null' ERR
    trap '{ __ipyrunner_on_exit; } 2>/dev/null' EXIT
    set -o errtrace
    # Command substitution drops -e unless told; the cell's flags come back here.
    if [[ $__ipyrunner_flags == *e* ]]; then set -e; fi
    if [[ $__ipyrunner_flags == *u* ]]; then set -u; fi
    if [[ $__ipyrunner_flags == *x* ]]; then set -x; fi
    execute "$__ipyrunner_input"
)
__ipyrunner_status=$?

__ipyrunner_failure=''
if [[ $__ipyrunner_out == *"$__ipyrunner_mark"* ]]; then
    __ipyrunner_failure=${__ipyrunner_out##*"$__ipyrunner_mark"}
    __ipyrunner_out=${__ipyrunner_out%"$__ipyrunner_mark"*}
fi
# $(...) keeps the newlines before the mark: drop them, they are only layout.
__ipyrunner_out=${__ipyrunner_out%"${__ipyrunner_out##*[!$'\n']}"}

if ((__ipyrunner_status != 0)); then
    __ipyrunner_err_line=${__ipyrunner_failure%%$'\x1f'*}
    __ipyrunner_failure=${__ipyrunner_failure#*$'\x1f'}
    __ipyrunner_err_cmd=${__ipyrunner_failure%%$'\x1f'*}
    __ipyrunner_err_trace=${__ipyrunner_failure#*$'\x1f'}
    if [[ -n $__ipyrunner_err_trace ]]; then __ipyrunner_err_trace+=$'\n'; fi # eaten by $(...)
    __ipyrunner_message="execute returned status $__ipyrunner_status"
    if [[ -n $__ipyrunner_err_line ]]; then
        __ipyrunner_message+=" (last failing command: '$__ipyrunner_err_cmd' at line $__ipyrunner_err_line)"
    fi
    # What execute printed before failing is no result, but the user may need it.
    if [[ -n $__ipyrunner_out ]]; then printf '%s\n' "$__ipyrunner_out"; fi
    __ipyrunner_error ExitStatus "$__ipyrunner_message" "$__ipyrunner_err_trace"
elif [[ $__ipyrunner_out != *[![:space:]]* ]]; then
    __ipyrunner_error ResultNotJSON \
        "execute printed no result; print a JSON value on stdout (use >&2 for messages)"
else
    __ipyrunner_envelope="{\"value\": $__ipyrunner_out"$'\n'", \"ipyrunner\": 1, \"ok\": true}"
    __ipyrunner_ok=1
fi
__ipyrunner_send
