"""
Configuration for every script, nanoGPT-style: plain defaults in the script, then presets
(python files in config/) and --key=value overrides from the command line, in order.

    python train.py config/shapes_gpu.py --batch_size=32 --compile=False

Values are parsed as Python literals and must have the default's type (an int is accepted
where a float is expected); unknown keys are rejected with the list of valid ones. --help (or -h)
prints the script's docstring and every setting with its default and note.

Also the file helpers every script shares: a writable output folder, checked before any work,
and an atomic save.
"""
import ast
import difflib
import math
import os
import re
import sys


def _coerce(key, value, default):
    """`value` converted to the type of `default`, or a ValueError saying what was expected."""
    want = type(default)
    hint = ""
    if want is tuple:  # how to write one, quotes and commas included
        strings = isinstance(value, str) and all(isinstance(d, str) for d in default)
        example = repr((value,) if strings else default)
        hint = f', written as Python, e.g. --{key}="{example}"' if '"' not in example else ""
    wrong = ValueError(f"{key} must be {'an' if want is int else 'a'} {want.__name__} "
                       f"(default {default!r}), got {value!r}{hint}")
    if want is int and isinstance(value, bool):  # True is an int to Python, not to a user
        raise wrong
    if default is None or isinstance(value, want):
        return value
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is tuple and isinstance(value, list):
        return tuple(value)
    raise wrong


def _parse_value(text):
    """A command-line string as a Python literal; bare words stay strings (--device=cuda)."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def configure(defaults, argv=None):
    """
    Resolve a config: `defaults` (dict) updated by preset files and --key=value arguments.
    Raises SystemExit with one clear message on an unknown key, a wrong type or a missing file.
    """
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print_help(defaults)
        raise SystemExit(0)
    config = dict(defaults)

    def update(key, value, source):
        if key not in defaults:  # one line: the nearest key, then all of them
            near = difflib.get_close_matches(key, defaults, n=1)
            hint = f": did you mean {near[0]!r}?" if near else "."
            raise SystemExit(f"error: unknown config key {key!r} (from {source}){hint} "
                             f"Valid keys: {', '.join(sorted(defaults))}")
        try:
            config[key] = _coerce(key, value, defaults[key])
        except ValueError as e:
            raise SystemExit(f"error: {e} (from {source})")

    for arg in argv:
        if arg.startswith("--"):
            if "=" not in arg:
                raise SystemExit(f"error: expected --key=value, got {arg!r}")
            key, text = arg[2:].split("=", 1)
            value = _parse_value(text)
            if isinstance(defaults.get(key), str) and not isinstance(value, str):
                value = text  # a text setting takes the text as typed: --out_dir=2026, --name=None
            update(key, value, arg)
        else:
            if not os.path.isfile(arg):
                raise SystemExit(f"error: config file {arg!r} not found (expected a preset such "
                                 f"as config/shapes_tiny.py, or --key=value)")
            preset = {}
            try:
                with open(arg) as f:
                    exec(f.read(), {}, preset)
            except Exception as e:  # a typo in a preset: one line that points at it
                where = f", line {e.lineno}" if getattr(e, "lineno", None) else ""
                raise SystemExit(f"error: config file {arg!r} does not run as Python ({type(e).__name__}"
                                 f"{where}: {first_sentence(e)}); a preset is assignments such as "
                                 f"batch_size = 16") from None
            for key, value in preset.items():
                if not key.startswith("_"):
                    update(key, value, arg)
    if "device" in config:
        check_device(config["device"])
    return config


def run(main, interrupted=""):
    """A script's entry point: main(), with Ctrl-C ending in one line (and `interrupted`, how to go
    on) instead of a traceback."""
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit("\ninterrupted" + (f": {interrupted}" if interrupted else "")) from None


def check_device(device):
    """'cpu', 'cuda' or 'cuda:N' that this machine has; else one error line now, not a deep
    one later, far from the cause."""
    import torch
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise SystemExit(f"error: device={device!r}: this project runs on 'cpu' or 'cuda' (or "
                         f"'cuda:N')")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: device={device!r}, but PyTorch sees no CUDA GPU here "
                         f"(torch {torch.__version__}): use --device=cpu")
    n = torch.cuda.device_count() if dev.type == "cuda" else 0
    if dev.type == "cuda" and (dev.index or 0) >= n:
        raise SystemExit(f"error: device={device!r}, but this machine has {n} GPU(s): use cuda:0 "
                         f"to cuda:{n - 1}")


def writable_dir(path, key, error=SystemExit):
    """Make folder `path` (the setting `key`) if missing and check that files can be written in
    it: one error line before any work, not a traceback after it. Returns path. error: as in
    check_ranges (another exception class for library callers, without the 'error: ' prefix)."""
    import tempfile
    prefix = "error: " if error is SystemExit else ""
    if not path:
        raise error(f"{prefix}--{key} is empty: give a folder")
    if os.path.isfile(path):
        raise error(f"{prefix}--{key}={path} is a file, not a folder: give another --{key}")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise error(f"{prefix}--{key}={path}: cannot write there ({e.strerror or e}): give "
                    f"another --{key}") from None
    return path


def save_atomic(obj, path):
    """torch.save that a crash mid-write never turns into a half file in place of a good one:
    written to a temp file, flushed to the disk, then renamed over the old one."""
    import torch
    with open(path + ".tmp", "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())  # on the disk before the rename: a power cut leaves old or new
    os.replace(path + ".tmp", path)


AT_LEAST_1 = (lambda x: x >= 1, "at least 1")
AT_LEAST_0 = (lambda x: x >= 0, "0 or more")
POSITIVE = (lambda x: x > 0, "more than 0")
FRACTION = (lambda x: 0 <= x <= 1, "between 0 and 1")


def first_sentence(error):
    """An exception's message cut to its first sentence of its first line (torch's load errors
    run to a paragraph), for one-line error messages."""
    return (str(error).strip().splitlines() or [""])[0].split(". ")[0][:200]


def check_ranges(config, rules, error=SystemExit):
    """Stop at the first setting out of its range or not finite, naming it and the range to use. rules:
    [(keys, (test, range in words))]; keys missing from config are skipped (one rule list can
    serve two scripts). error=ValueError for library callers."""
    for keys, (ok, want) in rules:
        for key in (k for k in keys if k in config):
            value = config[key]
            if isinstance(value, float) and not math.isfinite(value):  # inf would pass x >= 0
                problem = "is not a finite number"
            elif not ok(value):
                problem = "is out of range"
            else:
                continue
            message = f"--{key}={value} {problem}: use {want}"
            raise error(f"error: {message}" if error is SystemExit else message)


def print_help(defaults):
    """--help: the running script's docstring, then every key with its default and the comment
    on the line of the key's first assignment in the script (`key = v  # note`, `a, b = 1, 2  #
    note`, `key: type = v  # note` or `key=v,  # note` in a dict), at most 4 spaces in: the
    defaults, not a function body."""
    main = sys.modules["__main__"]
    path = getattr(main, "__file__", None) or ""  # none in an interactive session
    script = os.path.relpath(path) if path else "script.py"  # data/prepare.py from the root
    notes, seen = {}, set()
    try:
        with open(path) as f:
            for line in f:
                if len(line) - len(line.lstrip()) > 4:
                    continue
                masked = re.sub(r"(['\"]).*?\1", lambda m: "_" * len(m.group()), line)  # strings out
                cut = masked.find("#") if "#" in masked else len(line)
                code, note = masked[:cut], line[cut + 1:].strip()
                targets = re.findall(r"(?<![-\w])(\w+)\s*(?::\s*\w+\s*)?=(?!=)", code)  # not --key=v
                many = re.match(r"\s*(\w+(?:\s*,\s*\w+)+)\s*=(?!=)", code)
                for key in targets + (re.findall(r"\w+", many.group(1)) if many else []):
                    if key in defaults and key not in seen:
                        seen.add(key)
                        if note:
                            notes[key] = note
    except OSError:
        pass
    print((main.__doc__ or "").strip() + "\n")
    print(f"usage: python {script} [preset.py ...] [--key=value ...]; options and defaults:")
    width = max(map(len, defaults))
    for key in sorted(defaults):
        line = f"  --{key:<{width}} = {defaults[key]!r}"
        print(f"{line:<{width + 24}}  # {notes[key]}" if key in notes else line)


def print_config(config):
    """The resolved config, one key a line, as every run log starts with it."""
    width = max(map(len, config))
    for key in sorted(config):
        print(f"  {key:<{width}} = {config[key]!r}")
