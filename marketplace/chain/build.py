"""Compile `contracts/src` into `contracts/build/<Contract>.json`, and read those artifacts back.

The build is reproducible byte for byte on any machine and checkout path:

- Every source goes to solc as inline ``content`` under a source unit name relative to the project
  root (``contracts/src/LeaseEscrow.sol``, ``node_modules/@openzeppelin/contracts/...``), so the
  compiler never reads the file system and no absolute path reaches the metadata (whose hash ends the
  bytecode). Imports are followed here, the way solc resolves them, to collect those sources.
- The settings are contracts/foundry.toml's: optimizer on, 200 runs, evm cancun, and the
  ``@openzeppelin/contracts/`` remapping onto the pinned npm package.
- The compiler is solc 0.8.28 and nothing else: ``SOLC_BINARY``, else a native ``solc`` on PATH that says
  0.8.28, else contracts/solc (a Node wrapper over the npm JavaScript build of the same release).
- Artifacts are JSON with sorted keys, two-space indents and a trailing newline.

An artifact: ``contract``, ``source`` (its unit name), ``abi``, ``bytecode`` and ``deployedBytecode``
(0x hex; ``0x`` for an interface), ``compiler``, ``sources`` (``{unit name: sha256}`` of every file the
contract was built from) and ``sources_sha256`` (the sha256 of those lines in ``sha256sum`` format,
sorted by name: one value that changes whenever any of the files does).

>>> artifact = load_artifact("LeaseEscrow")
>>> artifact["bytecode"][:4], artifact["compiler"]
('0x60', '0.8.28')
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SRC_DIR = Path("contracts") / "src"  # relative to a root: sources are named from the root
BUILD_DIR = ROOT / "contracts" / "build"
WRAPPER = ROOT / "contracts" / "solc"
SOLC_VERSION = "0.8.28"
COMPILE_COMMAND = "python manage.py compile_contracts"
REMAPPINGS = ("@openzeppelin/contracts/=node_modules/@openzeppelin/contracts/",)
SETTINGS: dict[str, Any] = {  # contracts/foundry.toml's [profile.default]
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "remappings": list(REMAPPINGS),
}
OUTPUTS = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"]

# Comments and string literals in one pass, so an `import` inside a comment is never followed.
_LEXEMES = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|//[^\n]*|/\*.*?\*/', re.DOTALL)
# Imports are top-level statements, so only a line that starts with `import` is one.
_IMPORT = re.compile(r'^[ \t]*import\b[^;"\']*(["\'])(?P<path>[^"\']+)\1[^;]*;', re.MULTILINE)


class BuildError(Exception):
    """The contracts could not be compiled, or an artifact cannot be read; the message says what to do."""


class CompileError(BuildError):
    """solc refused the sources. ``messages`` are ``file:line: Type: message`` lines."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


class ArtifactMissing(BuildError):
    """contracts/build lacks the artifact asked for."""


# --- which compiler ---

def find_solc() -> Path:
    """The solc 0.8.28 to compile with: ``SOLC_BINARY``, a native ``solc`` on PATH, or contracts/solc.

    >>> find_solc().name
    'solc'
    """
    configured = os.environ.get("SOLC_BINARY")
    if configured:
        return Path(configured)
    native = shutil.which("solc")
    if native and _reports_version(native):
        return Path(native)
    if shutil.which("node") is None:
        raise BuildError("no solc 0.8.28 found: install Node.js and run `npm ci` (contracts/solc runs solc's "
                         "JavaScript build), or set SOLC_BINARY to a native solc 0.8.28")
    if not (ROOT / "node_modules" / "solc").is_dir():
        raise BuildError("node_modules/solc is missing: run `npm ci` in the project root (or set SOLC_BINARY)")
    return WRAPPER


def _reports_version(binary: str) -> bool:
    try:
        answer = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return f"Version: {SOLC_VERSION}+" in answer.stdout


# --- sources: what solc is given ---

def collect_sources(root: Path = ROOT) -> dict[str, str]:
    """Every source under ``root/contracts/src`` and everything they import: ``{unit name: text}``.

    >>> sorted(collect_sources())[:2]
    ['contracts/src/ILeaseEscrow.sol', 'contracts/src/LeaseEscrow.sol']
    """
    pending = sorted(path.relative_to(root).as_posix() for path in (root / SRC_DIR).glob("**/*.sol"))
    if not pending:
        raise BuildError(f"no Solidity sources under {root / SRC_DIR}")
    sources: dict[str, str] = {}
    while pending:
        unit = pending.pop()
        if unit not in sources:
            sources[unit] = _read_source(root, unit)
            pending.extend(_imported_units(root, unit, sources[unit]))
    return dict(sorted(sources.items()))


def _read_source(root: Path, unit: str) -> str:
    # Read as bytes and decode strictly: solc hashes the exact bytes, so no newline translation.
    return (root / unit).read_bytes().decode("utf-8")


def _imported_units(root: Path, unit: str, text: str) -> list[str]:
    """The unit names ``unit`` imports; a missing file is an error naming the import's line."""
    code = _LEXEMES.sub(_blank_comments, text)
    units = []
    for match in _IMPORT.finditer(code):
        target = _resolve_import(unit, match.group("path"))
        if not (root / target).is_file():
            line = code.count("\n", 0, match.start()) + 1
            hint = " (run `npm ci` in the project root)" if target.startswith("node_modules/") else ""
            raise CompileError([f"{unit}:{line}: imported file not found: {match.group('path')!r} "
                                f"(looked for {target}){hint}"])
        units.append(target)
    return units


def _blank_comments(match: re.Match[str]) -> str:
    """Comments become spaces (newlines kept, for line numbers); string literals stay."""
    text = match.group(0)
    return text if text[0] in "\"'" else re.sub(r"[^\n]", " ", text)


def _resolve_import(importer: str, path: str) -> str:
    """solc's rule: ./ and ../ are relative to the importing unit, then the remappings apply."""
    if path.startswith(("./", "../")):
        path = posixpath.normpath(posixpath.join(posixpath.dirname(importer), path))
    for remapping in REMAPPINGS:
        prefix, target = remapping.split("=", 1)
        if path.startswith(prefix):
            return target + path[len(prefix):]
    return path


def standard_json_input(sources: Mapping[str, str]) -> dict[str, Any]:
    """The Standard JSON solc is given: inline sources, foundry.toml's settings, outputs for ours only."""
    ours = {unit: {"*": OUTPUTS} for unit in sources if unit.startswith(SRC_DIR.as_posix() + "/")}
    return {
        "language": "Solidity",
        "sources": {unit: {"content": text} for unit, text in sources.items()},
        "settings": {**SETTINGS, "outputSelection": ours},
    }


# --- compiling ---

def compile_contracts(root: Path = ROOT, *, solc: Path | None = None) -> dict[str, dict[str, Any]]:
    """Compile every contract and interface under ``root/contracts/src``: ``{name: artifact}``.

    Raises `CompileError` (``file:line: Type: message`` lines) when solc refuses the sources.

    >>> sorted(compile_contracts())
    ['ILeaseEscrow', 'LeaseEscrow', 'MarketToken']
    """
    sources = collect_sources(root)
    output = _run_solc(standard_json_input(sources), solc or find_solc(), root)
    errors = [item for item in output.get("errors", []) if item.get("severity") == "error"]
    if errors:
        raise CompileError([_format_diagnostic(item, sources) for item in errors])
    return _artifacts(output, sources)


def _run_solc(standard_input: dict[str, Any], solc: Path, root: Path) -> dict[str, Any]:
    import solcx
    from solcx.exceptions import SolcError

    version = _binary_version(solc)
    if version != SOLC_VERSION:
        raise BuildError(f"{solc} is solc {version}; the contracts are built with solc {SOLC_VERSION} only")
    try:
        # Sources are inline, so the paths only bound what solc may read (nothing, in practice).
        output: dict[str, Any] = solcx.compile_standard(standard_input, solc_binary=solc, base_path=root,
                                                        allow_paths=[root])
    except SolcError as exc:
        if exc.error_dict:  # solc answered, with errors: report them as ours below
            return {"errors": exc.error_dict}
        detail = (exc.stderr_data or exc.stdout_data or exc.message or "").strip()[-2000:]
        raise BuildError(f"{solc} failed (exit {exc.return_code}): {detail}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BuildError(f"{solc} could not be run: {exc}") from None
    return output


def _binary_version(solc: Path) -> str:
    try:
        answer = subprocess.run([str(solc), "--version"], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise BuildError(f"solc {solc} cannot be run: {exc.strerror}") from None
    found = re.search(r"Version: (\d+\.\d+\.\d+)", answer.stdout)
    if answer.returncode != 0 or not found:
        hint = " (contracts/solc needs Node.js and `npm ci`)" if solc == WRAPPER else ""
        raise BuildError(f"{solc} --version failed{hint}: {(answer.stderr or answer.stdout).strip()[-500:]}")
    return found.group(1)


def _format_diagnostic(item: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    """``file:line: Type: message`` (solc gives a byte offset; lines are counted in the source's bytes)."""
    kind, message = item.get("type", "Error"), item.get("message", "").strip()
    location = item.get("sourceLocation") or {}
    unit = str(location.get("file", ""))
    if unit not in sources:
        return f"{kind}: {message}"
    start = max(int(location.get("start", 0)), 0)
    line = sources[unit].encode("utf-8")[:start].count(b"\n") + 1
    return f"{unit}:{line}: {kind}: {message}"


def _artifacts(output: Mapping[str, Any], sources: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    artifacts: dict[str, dict[str, Any]] = {}
    for unit, contracts in sorted(output.get("contracts", {}).items()):
        for name, compiled in sorted(contracts.items()):
            if name in artifacts:
                raise BuildError(f"two contracts are named {name}: {artifacts[name]['source']} and {unit}")
            artifacts[name] = _artifact(name, unit, compiled, sources)
    return artifacts


def _artifact(name: str, unit: str, compiled: Mapping[str, Any], sources: Mapping[str, str]) -> dict[str, Any]:
    used = sorted(json.loads(compiled["metadata"])["sources"])  # exactly the files this contract was built from
    hashes = {path: _sha256(sources[path]) for path in used}
    return {
        "contract": name,
        "source": unit,
        "abi": compiled["abi"],
        "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
        "compiler": SOLC_VERSION,
        "sources": hashes,
        "sources_sha256": sources_digest(hashes),
    }


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sources_digest(hashes: Mapping[str, str]) -> str:
    """One sha256 over ``{unit name: sha256}``: the digest of those lines in ``sha256sum`` format.

    >>> sources_digest({"a.sol": "00" * 32}) == hashlib.sha256(("00" * 32 + "  a.sol\\n").encode()).hexdigest()
    True
    """
    lines = "".join(f"{digest}  {unit}\n" for unit, digest in sorted(hashes.items()))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


# --- the build directory ---

def render_artifact(artifact: Mapping[str, Any]) -> str:
    """The exact text of an artifact file."""
    return json.dumps(artifact, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def write_build(build_dir: Path = BUILD_DIR, artifacts: Mapping[str, Mapping[str, Any]] | None = None) -> list[Path]:
    """Compile (unless ``artifacts`` are given) and write ``<Contract>.json`` for each; stale files go.

    >>> [path.name for path in write_build()]
    ['ILeaseEscrow.json', 'LeaseEscrow.json', 'MarketToken.json']
    """
    artifacts = compile_contracts() if artifacts is None else artifacts
    build_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in sorted(artifacts.items()):
        path = build_dir / f"{name}.json"
        path.write_text(render_artifact(artifact), encoding="utf-8", newline="\n")
        written.append(path)
    for leftover in set(build_dir.glob("*.json")) - set(written):  # a renamed or deleted contract
        leftover.unlink()
    return written


def build_differences(artifacts: Mapping[str, Mapping[str, Any]], build_dir: Path = BUILD_DIR) -> list[str]:
    """How ``build_dir`` differs from freshly compiled ``artifacts`` (empty when it is exactly right).

    >>> build_differences(compile_contracts())
    []
    """
    expected = {f"{name}.json": render_artifact(artifact) for name, artifact in artifacts.items()}
    present = {path.name for path in build_dir.glob("*.json")}
    problems = [f"{name} is missing" for name in sorted(set(expected) - present)]
    problems += [f"{name} has no source any more" for name in sorted(present - set(expected))]
    problems += [f"{name} differs from a fresh compile" for name in sorted(present & set(expected))
                 if (build_dir / name).read_text(encoding="utf-8") != expected[name]]
    return problems


def stale_artifacts(build_dir: Path = BUILD_DIR, root: Path = ROOT) -> list[str]:
    """What in ``build_dir`` no longer matches the sources, without compiling (a hash check, fast).

    Catches edited, added and deleted sources; only `build_differences` also catches a changed compiler.

    >>> stale_artifacts()
    []
    """
    artifacts = {path.name: _read_json(path) for path in sorted(build_dir.glob("*.json"))}
    if not artifacts:
        return [f"{_shown(build_dir, root)} has no artifacts"]
    problems, covered = [], set()
    for file_name, artifact in artifacts.items():
        for unit, digest in artifact.get("sources", {}).items():
            covered.add(unit)
            if not (root / unit).is_file():
                problems.append(f"{file_name}: {unit} is gone")
            elif _sha256(_read_source(root, unit)) != digest:
                problems.append(f"{file_name}: {unit} changed")
    for path in sorted((root / SRC_DIR).glob("**/*.sol")):
        if path.relative_to(root).as_posix() not in covered:
            problems.append(f"{path.relative_to(root).as_posix()} is in no artifact")
    return problems


def build_is_current(build_dir: Path = BUILD_DIR, root: Path = ROOT) -> bool:
    """True when every artifact matches the sources on disk (see `stale_artifacts`).

    >>> build_is_current()
    True
    """
    return not stale_artifacts(build_dir, root)


def load_artifact(name: str, build_dir: Path = BUILD_DIR) -> dict[str, Any]:
    """The artifact of contract ``name`` from contracts/build.

    >>> load_artifact("MarketToken")["abi"][0]["type"]
    'constructor'
    """
    path = build_dir / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in build_dir.glob("*.json"))) or "none"
        raise ArtifactMissing(f"{_shown(path, ROOT)} does not exist (artifacts there: {known}); "
                              f"run `{COMPILE_COMMAND}`")
    return _read_json(path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuildError(f"{path} cannot be read ({exc}); run `{COMPILE_COMMAND}`") from None
    return loaded


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def describe(problems: Iterable[str]) -> str:
    """One message for a list of build problems, ending with the command that fixes them."""
    return "contracts/build is out of date:\n  " + "\n  ".join(problems) + f"\nrun `{COMPILE_COMMAND}`"
