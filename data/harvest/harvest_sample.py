#!/usr/bin/env python3
"""Harvest the shipped real-code sample `data/sample/` from published packages.

Every file in the sample comes from a package with a pinned version and a permissive licence, listed in
`packages.toml` beside this script. The script

1. fetches each package with its registry's ordinary client (apt-get, npm, pip) into a cache folder,
2. unpacks it there,
3. picks files by the package's glob patterns, per language,
4. filters them (valid UTF-8, size bounds, no exact duplicates), caps files per package and per language,
5. writes `<out>/<language>/part-00000.parquet` in the StarCoderData layout, plus `MANIFEST.csv`.

With a config whose `[settings]` has `heldout_files_per_language` (`packages_large.toml`, the corpus of the
data ablation, experiments/ablation), step 5 becomes: hold out whole packages per language as evaluation
sets, remove near-duplicates (MinHash) in the pool and in the held-out sets, remove from the pool the files
that appear in the held-out sets or in HumanEval/MBPP (`dedup.py`), and write `<out>/corpus/<language>/`
(the training pool, in shards), `<out>/heldout/<language>/`, `MANIFEST.csv` (with a `split` column) and
`harvest_report.json` (sizes and every count).

The selection depends only on the config and the packages' contents, so a re-run gives the same sample.

Glob patterns are fnmatch patterns matched against the path inside the package (after its top folder is
stripped for tarballs): `*` also crosses `/`, so `*.py` means every Python file anywhere and `tests/*.py`
every Python file under `tests/`. Each file belongs to the first pattern it matches; the package's files are
then taken round-robin across its patterns, so a package whose patterns name tests, examples and library
code contributes some of each rather than whatever sorts first.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import tomllib
from tqdm import tqdm

from curator.labels import LANGUAGES

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent


# Licences we accept (SPDX ids). A package's `license` may be an SPDX expression ("MIT OR Apache-2.0",
# "MIT AND Apache-2.0"): every id named in it must be on this list, so that the whole file is usable.
ALLOWED_LICENSES = frozenset(
    {
        "MIT",
        "MIT-0",
        "X11",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "Apache-2.0",
        "ISC",
        "PostgreSQL",
        "Zlib",
        "Unlicense",
        "PSF-2.0",
        "CC0-1.0",
        "0BSD",
    }
)

# The repository-style prefix of `max_stars_repo_name` per source kind: splits group by this name.
KIND_PREFIX = {
    "debian-src": "debian",
    "debian-bin": "debian",
    "npm": "npm",
    "pypi": "pypi",
    "pypi-wheel": "pypi",
}

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("content", pa.string()),
        ("max_stars_repo_path", pa.string()),
        ("max_stars_repo_name", pa.string()),
        ("max_stars_count", pa.int64()),
    ]
)

MANIFEST_COLUMNS = ("id", "language", "source", "package", "version", "path", "license", "sha1")


@dataclass
class Package:
    kind: str  # debian-src | debian-bin | npm | pypi (sdist) | pypi-wheel
    name: str
    version: str
    license: str  # SPDX id or expression, as read from the package's own licence file or metadata
    take: dict[str, list[str]]  # language -> glob patterns
    exclude: list[str] = field(default_factory=list)
    max_files: int | None = None  # per language; None means the config's default
    # Shell files this package's patterns match are shell even with no extension or shebang: for packages of
    # sourced fragments (debootstrap's suite scripts, configure fragments) that have neither.
    shell_fragments: bool = False
    note: str = ""

    @property
    def repo(self) -> str:
        return f"{KIND_PREFIX[self.kind]}/{self.name}"

    @property
    def key(self) -> str:
        return f"{self.kind}_{self.name}_{self.version}".replace("/", "_").replace(":", "_")


@dataclass
class Settings:
    min_bytes: int
    max_bytes: int
    max_files_per_package: int
    max_files_per_language: int
    exclude: list[str] = field(default_factory=list)
    # The large harvest (packages_large.toml) only: per-package `max_files` are ignored (they shape the
    # sample's mix, not a training corpus), whole packages are held out per language, near-duplicates removed.
    ignore_package_max_files: bool = False
    heldout_files_per_language: int = 0  # 0: no held-out sets, no near-dedup, no decontamination (the sample)
    heldout_max_fraction: float = 0.1  # of a language's files: small languages (SQL, shell) keep a pool
    near_dup_threshold: float = 0.7
    rows_per_shard: int = 10000


def license_ids(expression: str) -> set[str]:
    """The SPDX ids named in a licence expression (operators and brackets dropped)."""
    words = expression.replace("(", " ").replace(")", " ").split()
    return {w for w in words if w not in ("AND", "OR", "WITH")}


def load_config(path: Path) -> tuple[Settings, list[Package]]:
    """Settings and packages; `extends = "other.toml"` takes that config's packages first, then this one's."""
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    s = raw["settings"]
    settings = Settings(**s)
    entries = list(raw.get("package", []))
    if "extends" in raw:
        base = path.parent / raw["extends"]
        with open(base, "rb") as fh:
            entries = list(tomllib.load(fh)["package"]) + entries
    packages = []
    seen: set[tuple[str, str]] = set()
    for p in entries:
        pkg = Package(**p)
        if (pkg.kind, pkg.name) in seen:
            raise ValueError(f"{pkg.repo}: listed twice (check the extended config)")
        seen.add((pkg.kind, pkg.name))
        bad = license_ids(pkg.license) - ALLOWED_LICENSES
        if bad:  # a config error, not a runtime choice: a non-permissive package must never get in
            raise ValueError(
                f"{pkg.repo}: licence {pkg.license!r} names {sorted(bad)}, not on the allow-list"
            )
        unknown = set(pkg.take) - set(LANGUAGES)
        if unknown:
            raise ValueError(f"{pkg.repo}: unknown languages {sorted(unknown)}")
        packages.append(pkg)
    return settings, packages


# ---------------------------------------------------------------------------------------------------------
# Fetching and unpacking


def run(cmd: list[str], cwd: Path) -> None:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{result.stdout}\n{result.stderr}")


def download(pkg: Package, dl_dir: Path) -> None:
    """Fetch the package's archive(s) into dl_dir with the registry's own client."""
    dl_dir.mkdir(parents=True, exist_ok=True)
    if pkg.kind == "debian-src":
        # Needs deb-src entries in apt's sources and a prior `apt-get update`.
        run(["apt-get", "source", "--download-only", "-qq", f"{pkg.name}={pkg.version}"], dl_dir)
    elif pkg.kind == "debian-bin":
        run(["apt-get", "download", "-qq", f"{pkg.name}={pkg.version}"], dl_dir)
    elif pkg.kind == "npm":
        run(
            ["npm", "pack", "--silent", f"{pkg.name}@{pkg.version}", "--pack-destination", str(dl_dir)],
            dl_dir,
        )
    elif pkg.kind in ("pypi", "pypi-wheel"):
        # `--no-binary NAME` (not `:all:`) asks for this package's sdist only: the build tools pip needs to
        # read the sdist's metadata still come as wheels, so nothing gets compiled.
        fmt = ["--no-binary", pkg.name] if pkg.kind == "pypi" else ["--only-binary", ":all:"]
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                *fmt,
                f"{pkg.name}=={pkg.version}",
                "-d",
                str(dl_dir),
            ],
            dl_dir,
        )
    else:
        raise ValueError(f"unknown package kind {pkg.kind!r}")


def _strip_top(names: list[str]) -> bool:
    """Whether every member of an archive lies under one top folder (as sdists and source tarballs do)."""
    tops = {n.split("/", 1)[0] for n in names if n.strip("/")}
    return len(tops) == 1 and all("/" in n.strip("/") or n.strip("/") in tops for n in names)


def unpack_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tf:
        members = [m for m in tf.getmembers() if m.isfile()]  # links and devices carry no code of their own
        strip = _strip_top([m.name for m in tf.getmembers()])
        for m in members:
            rel = m.name.split("/", 1)[1] if strip else m.name
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with tf.extractfile(m) as src:
                target.write_bytes(src.read())


def unpack_zip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        strip = _strip_top(names) and not archive.name.endswith(".whl")  # a wheel's root is the install root
        for name in names:
            if name.endswith("/"):
                continue
            rel = name.split("/", 1)[1] if strip else name
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(name))


def unpack(pkg: Package, dl_dir: Path, tree: Path) -> None:
    tree.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in dl_dir.iterdir() if p.is_file())
    if pkg.kind == "debian-src":
        # Upstream's code is in the .orig tarball (or the single tarball of a native package); the Debian
        # packaging (debian/ folder) is left out because its licence is often not the upstream's.
        tars = [f for f in files if ".orig." in f.name and ".tar." in f.name and not f.name.endswith(".asc")]
        if not tars:
            tars = [
                f
                for f in files
                if ".tar." in f.name and ".debian.tar." not in f.name and not f.name.endswith(".asc")
            ]
        for t in tars:
            unpack_tar(t, tree)
    elif pkg.kind == "debian-bin":
        for deb in files:
            run(["dpkg-deb", "-x", str(deb), str(tree)], dl_dir)
    else:
        for f in files:
            if f.name.endswith((".tgz", ".tar.gz", ".tar.bz2", ".tar.xz")):
                unpack_tar(f, tree)
            elif f.name.endswith((".zip", ".whl")):
                unpack_zip(f, tree)


def fetch(pkg: Package, cache: Path) -> Path:
    """The unpacked tree of a package, downloading and unpacking it once per cache."""
    base = cache / pkg.key
    tree, done = base / "tree", base / ".unpacked"
    if done.exists():
        return tree
    dl_dir = base / "download"
    if not dl_dir.exists() or not any(dl_dir.iterdir()):
        download(pkg, dl_dir)
    unpack(pkg, dl_dir, tree)
    done.touch()
    return tree


# ---------------------------------------------------------------------------------------------------------
# Selecting files


def sha1(data: bytes | str) -> str:
    return hashlib.sha1(data.encode() if isinstance(data, str) else data).hexdigest()


def read_text(path: Path, settings: Settings) -> str | None:
    """The file's text if it passes the filters, else None."""
    size = path.stat().st_size
    if not settings.min_bytes <= size <= settings.max_bytes:
        return None
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.strip() or "\x00" in text:  # NUL bytes mean a binary file that happens to decode
        return None
    return text


SHELL_EXTENSIONS = (".sh", ".bash", ".zsh", ".bats", ".ksh")
SHELL_SHEBANG = re.compile(r"#!\s*(/usr)?/bin/(env\s+)?(ba|z|da|k)?sh\b")


def is_language(language: str, rel: str, text: str, shell_fragments: bool = False) -> bool:
    """Whether a file matched by a shell pattern really is shell.

    Shell scripts are often installed without an extension (`/usr/bin/foo`), next to Perl or Python scripts and
    binaries; such a file counts only with a shell shebang, or as a completion script. Other languages are
    taken by extension in the patterns, which is enough.
    """
    if language != "shell" or rel.endswith(SHELL_EXTENSIONS) or shell_fragments:
        return True
    return bool(SHELL_SHEBANG.match(text)) or "completion" in rel


def select_files(pkg: Package, tree: Path, settings: Settings) -> dict[str, list[tuple[str, str]]]:
    """language -> [(path, content)] picked from one package, at most the package's cap per language."""
    all_paths = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())
    excludes = settings.exclude + pkg.exclude
    cap = settings.max_files_per_package
    if pkg.max_files and not settings.ignore_package_max_files:
        cap = pkg.max_files
    picked: dict[str, list[tuple[str, str]]] = {}
    claimed: set[str] = set()  # a file counts for one language only
    for language, patterns in pkg.take.items():
        # Bucket the files by the first pattern they match, each bucket in a stable pseudo-random order
        # (by the hash of the path) so that a cap takes a spread of the package rather than its first folder.
        buckets: list[list[str]] = [[] for _ in patterns]
        for rel in all_paths:
            if rel in claimed or any(fnmatch.fnmatch(rel, x) for x in excludes):
                continue
            for i, pat in enumerate(patterns):
                if fnmatch.fnmatch(rel, pat):
                    buckets[i].append(rel)
                    break
        for b in buckets:
            b.sort(key=sha1)
        chosen: list[tuple[str, str]] = []
        seen: set[str] = set()
        cursors = [0] * len(buckets)
        while len(chosen) < cap and any(c < len(b) for c, b in zip(cursors, buckets, strict=True)):
            for i, b in enumerate(buckets):  # round-robin over the patterns
                while cursors[i] < len(b) and len(chosen) < cap:
                    rel = b[cursors[i]]
                    cursors[i] += 1
                    text = read_text(tree / rel, settings)
                    if (
                        text is None
                        or sha1(text) in seen
                        or not is_language(language, rel, text, pkg.shell_fragments)
                    ):
                        continue
                    seen.add(sha1(text))
                    chosen.append((rel, text))
                    claimed.add(rel)
                    break
        picked[language] = chosen
    return picked


def trim_language(rows: list[dict], limit: int) -> list[dict]:
    """Drop rows from the packages with the most files until the language has at most `limit` rows.

    Taking from the largest contributor first keeps as many packages as possible, which the repo-grouped
    splits need. Within a package the last-picked files go first (they are the tail of its round-robin).
    """
    by_repo: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_repo[r["max_stars_repo_name"]].append(r)
    excess = len(rows) - limit
    while excess > 0:
        biggest = max(sorted(by_repo), key=lambda k: len(by_repo[k]))
        by_repo[biggest].pop()
        excess -= 1
    kept = {id(r) for group in by_repo.values() for r in group}
    return [r for r in rows if id(r) in kept]


# ---------------------------------------------------------------------------------------------------------
# Writing


def write_sample(rows_by_lang: dict[str, list[dict]], out: Path) -> None:
    for language in LANGUAGES:
        rows = rows_by_lang.get(language, [])
        lang_dir = out / language
        lang_dir.mkdir(parents=True, exist_ok=True)
        for stale in lang_dir.glob("*.parquet"):
            stale.unlink()
        table = pa.Table.from_pylist([{c: r[c] for c in SCHEMA.names} for r in rows], schema=SCHEMA)
        pq.write_table(table, lang_dir / "part-00000.parquet", compression="zstd", compression_level=19)


def write_manifest(rows_by_lang: dict[str, list[dict]], out: Path, split: bool = False) -> None:
    with open(out / "MANIFEST.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(MANIFEST_COLUMNS + (("split",) if split else ()))
        for language in LANGUAGES:
            for r in rows_by_lang.get(language, []):
                w.writerow(
                    [
                        r["id"],
                        language,
                        r["_source"],
                        r["_package"],
                        r["_version"],
                        r["max_stars_repo_path"],
                        r["_license"],
                        sha1(r["content"]),
                        *([r["_split"]] if split else []),
                    ]
                )


# ---------------------------------------------------------------------------------------------------------
# The large harvest: held-out packages, near-duplicates, decontamination


def choose_heldout(rows: list[dict], language: str, target: int) -> set[str]:
    """The packages held out for one language: in a stable pseudo-random order, until `target` files.

    Whole packages are held out, so that no held-out file has a sibling from its own package in the pool. A
    package that would take the held-out set past twice the target is passed over (a 5,000-file package
    would make the held-out set mostly one code base).
    """
    sizes: dict[str, int] = defaultdict(int)
    for r in rows:
        sizes[r["max_stars_repo_name"]] += 1
    chosen, total = set(), 0
    for repo in sorted(sizes, key=lambda name: sha1(f"{language}:{name}")):
        if total >= target:
            break
        if total + sizes[repo] > 2 * target:
            continue
        chosen.add(repo)
        total += sizes[repo]
    return chosen


def build_large(rows_by_lang: dict[str, list[dict]], settings: Settings, mbpp: Path | None, workers: int):
    """Split, deduplicate and decontaminate: (pool, heldout) rows per language and the report's counts."""
    import dedup  # beside this script; needs datasketch, only the large harvest uses it

    report: dict = {"languages": {}, "near_dup_threshold": settings.near_dup_threshold}
    needles = dedup.benchmark_needles(mbpp)
    report["benchmark_strings"] = {k: len(v) for k, v in needles.items()}
    report["mbpp"] = str(mbpp) if mbpp else "not available (no package ships MBPP; pass --mbpp FILE)"
    pool_by_lang, heldout_by_lang = {}, {}
    heldout_index = dedup.NearDupIndex(settings.near_dup_threshold)
    # Held-out sets first: the pool is decontaminated against all of them, whatever the language.
    pool_rows: dict[str, list[dict]] = {}
    pool_sigs: dict[str, list] = {}
    for language in LANGUAGES:
        rows = rows_by_lang.get(language, [])
        target = min(settings.heldout_files_per_language, int(len(rows) * settings.heldout_max_fraction))
        held = choose_heldout(rows, language, max(target, 1))
        hrows = [r for r in rows if r["max_stars_repo_name"] in held]
        prows = [r for r in rows if r["max_stars_repo_name"] not in held]
        tqdm.write(f"{language}: minhash of {len(rows)} files")
        sigs = dedup.signatures([r["content"] for r in rows], workers)
        sig_of = {r["id"]: s for r, s in zip(rows, sigs, strict=True)}
        hkeep = dedup.near_dedup([r["id"] for r in hrows], [sig_of[r["id"]] for r in hrows])
        heldout_by_lang[language] = [r for r, k in zip(hrows, hkeep, strict=True) if k]
        for r in heldout_by_lang[language]:
            heldout_index.add(r["id"], sig_of[r["id"]])
        pkeep = dedup.near_dedup([r["id"] for r in prows], [sig_of[r["id"]] for r in prows])
        pool_rows[language] = [r for r, k in zip(prows, pkeep, strict=True) if k]
        pool_sigs[language] = [sig_of[r["id"]] for r in pool_rows[language]]
        report["languages"][language] = {
            "files_after_exact_dedup": len(rows),
            "heldout_packages": sorted(held),
            "heldout_near_dups_removed": len(hrows) - len(heldout_by_lang[language]),
            "pool_near_dups_removed": len(prows) - len(pool_rows[language]),
        }
    for language in LANGUAGES:
        kept, held_hits, bench_hits = [], 0, defaultdict(int)
        for r, sig in zip(pool_rows[language], pool_sigs[language], strict=True):
            if heldout_index.match(sig) is not None:
                held_hits += 1
                continue
            bench = dedup.contaminated_by(r["content"], needles)
            if bench:
                bench_hits[bench] += 1
                continue
            kept.append(r)
        pool_by_lang[language] = kept
        stats = report["languages"][language]
        stats["pool_removed_heldout_overlap"] = held_hits
        stats["pool_removed_benchmarks"] = dict(bench_hits)
        stats["pool_files"] = len(kept)
        stats["pool_bytes"] = sum(len(r["content"].encode()) for r in kept)
        stats["pool_packages"] = len({r["max_stars_repo_name"] for r in kept})
        stats["heldout_files"] = len(heldout_by_lang[language])
        stats["heldout_bytes"] = sum(len(r["content"].encode()) for r in heldout_by_lang[language])
    return pool_by_lang, heldout_by_lang, report


def write_shards(rows_by_lang: dict[str, list[dict]], out: Path, rows_per_shard: int) -> None:
    """`<out>/<language>/part-NNNNN.parquet`: several shards, so that score.py's ranks share the work."""
    for language in LANGUAGES:
        rows = rows_by_lang.get(language, [])
        lang_dir = out / language
        lang_dir.mkdir(parents=True, exist_ok=True)
        for stale in lang_dir.glob("*.parquet"):
            stale.unlink()
        for n, start in enumerate(range(0, max(len(rows), 1), rows_per_shard)):
            chunk = rows[start : start + rows_per_shard]
            table = pa.Table.from_pylist([{c: r[c] for c in SCHEMA.names} for r in chunk], schema=SCHEMA)
            pq.write_table(table, lang_dir / f"part-{n:05d}.parquet", compression="zstd")


def write_large(rows_by_lang, settings: Settings, out: Path, mbpp: Path | None, workers: int) -> None:
    pool, heldout, report = build_large(rows_by_lang, settings, mbpp, workers)
    out.mkdir(parents=True, exist_ok=True)
    write_shards(pool, out / "corpus", settings.rows_per_shard)
    write_shards(heldout, out / "heldout", settings.rows_per_shard)
    both = {lang: [{**r, "_split": "pool"} for r in pool[lang]] for lang in LANGUAGES}
    for lang in LANGUAGES:
        both[lang] += [{**r, "_split": "heldout"} for r in heldout[lang]]
    write_manifest(both, out, split=True)
    langs = report["languages"]
    report["pool_files"] = sum(v["pool_files"] for v in langs.values())
    report["pool_bytes"] = sum(v["pool_bytes"] for v in langs.values())
    report["heldout_files"] = sum(v["heldout_files"] for v in langs.values())
    (out / "harvest_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{'language':<12}{'pool files':>11}{'pool MB':>9}{'pkgs':>6}{'held-out':>9}{'near-dup':>9}"
        f"{'decontam':>9}"
    )
    for lang, v in langs.items():
        decontam = v["pool_removed_heldout_overlap"] + sum(v["pool_removed_benchmarks"].values())
        near = v["pool_near_dups_removed"] + v["heldout_near_dups_removed"]
        print(
            f"{lang:<12}{v['pool_files']:>11}{v['pool_bytes'] / 1e6:>9.1f}{v['pool_packages']:>6}"
            f"{v['heldout_files']:>9}{near:>9}{decontam:>9}"
        )
    print(
        f"pool: {report['pool_files']} files, {report['pool_bytes'] / 1e6:.1f} MB of text; written to {out}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="See data/sample/README.md for what the sample is and how to enlarge it.",
    )
    ap.add_argument("--config", type=Path, default=HERE / "packages.toml", help="package list (TOML)")
    ap.add_argument(
        "--cache",
        type=Path,
        default=REPO_ROOT / ".cache" / "harvest",
        help="where downloads and unpacked packages go (git-ignored)",
    )
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "data" / "sample", help="sample root to write")
    ap.add_argument(
        "--only", nargs="*", metavar="NAME", help="fetch only these packages (no sample is written)"
    )
    ap.add_argument("--fetch-only", action="store_true", help="download and unpack, write nothing")
    ap.add_argument(
        "--mbpp", type=Path, help="a local mbpp.jsonl to decontaminate against too (large harvest only)"
    )
    ap.add_argument("--workers", type=int, default=2, help="processes for MinHash (large harvest only)")
    ap.add_argument(
        "--list", metavar="NAME", help="print which files of a package each language's patterns match"
    )
    args = ap.parse_args(argv)

    settings, packages = load_config(args.config)
    args.cache.mkdir(parents=True, exist_ok=True)

    if args.list:
        pkg = next(p for p in packages if p.name == args.list)
        picked = select_files(pkg, fetch(pkg, args.cache), settings)
        for language, files in picked.items():
            print(f"{language}: {len(files)} files")
            for rel, text in files:
                print(f"  {len(text):>7}  {rel}")
        return 0

    if args.only:
        packages = [p for p in packages if p.name in args.only]

    trees = {}
    failed = []
    for pkg in tqdm(packages, desc="fetch", unit="pkg"):
        try:
            trees[pkg.key] = fetch(pkg, args.cache)
        except Exception as e:  # report every failure at the end rather than stop at the first
            failed.append(pkg.repo)
            tqdm.write(f"FAILED {pkg.repo} {pkg.version}: {e}")
    if failed:
        print(f"{len(failed)} packages failed to fetch: {failed}", file=sys.stderr)
        return 1
    if args.fetch_only or args.only:
        return 0

    # Select in config order; an exact duplicate of a file already taken (by content hash) is dropped, so the
    # first package listed keeps a file that several ship.
    rows_by_lang: dict[str, list[dict]] = defaultdict(list)
    seen_content: set[str] = set()
    for pkg in tqdm(packages, desc="select", unit="pkg"):
        for language, files in select_files(pkg, trees[pkg.key], settings).items():
            for rel, text in files:
                digest = sha1(text)
                if digest in seen_content:
                    continue
                seen_content.add(digest)
                rows_by_lang[language].append(
                    {
                        "id": sha1(f"{pkg.repo}:{rel}"),  # stable: depends on package and path only
                        "content": text,
                        "max_stars_repo_path": rel,
                        "max_stars_repo_name": pkg.repo,
                        "max_stars_count": 0,  # packages have no star count; 0 is the corpus readers' "unknown"
                        "_source": KIND_PREFIX[pkg.kind],
                        "_package": pkg.name,
                        "_version": pkg.version,
                        "_license": pkg.license,
                    }
                )
    for language in LANGUAGES:
        rows_by_lang[language] = trim_language(rows_by_lang[language], settings.max_files_per_language)
    if settings.heldout_files_per_language:
        write_large(rows_by_lang, settings, args.out, args.mbpp, args.workers)
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    write_sample(rows_by_lang, args.out)
    write_manifest(rows_by_lang, args.out)

    print(f"{'language':<12}{'files':>7}{'packages':>10}{'MB':>8}")
    for language in LANGUAGES:
        rows = rows_by_lang[language]
        n_pkg = len({r["max_stars_repo_name"] for r in rows})
        mb = sum(len(r["content"].encode()) for r in rows) / 1e6
        print(f"{language:<12}{len(rows):>7}{n_pkg:>10}{mb:>8.2f}")
    on_disk = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file()) / 1e6
    print(f"written to {args.out} ({on_disk:.1f} MB on disk)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
