"""What ``tar -x`` lays out from a tar's members: the files a folder reader would then see, and where each
file's bytes lie in the archive.

GNU tar's rules (checked against GNU tar 1.34 in ``tests/test_validation_archives.py``):

* names lose a leading ``/`` and ``./`` parts; a name with a ``..`` part is not extracted;
* members are extracted in archive order and a later member of the same name replaces the earlier one (the
  earlier file is unlinked first, so a hard link made to it before keeps its bytes);
* a hard link is made to what its target name is at that moment (the target must come before it);
* a symbolic link is followed when the folder is read, relative to its own directory, through other links;
* a sparse member extracts to its whole size, holes as zeros.

A link that cannot be followed inside the archive (to an absolute path, above the archive's root, to a missing
member or a directory, or through more than ``MAX_SYMLINKS`` links: a loop) is refused in one line naming the
member, when it names an image; a folder reader would read something else, or nothing.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ....errors import SenetZooError
from .headers import FILE, HARDLINK, SYMLINK, UNKNOWN, Header

MAX_SYMLINKS = 40            # Linux's limit on links followed while resolving one path
MAX_SPARSE_BYTES = 256 << 20  # a sparse member's whole size, the most read for one image
LISTED = 5                   # names listed in a note


@dataclass(frozen=True)
class Member:
    """A file as extraction leaves it: ``size`` bytes from ``data`` (a sparse file: its chunks from there)."""
    data: int
    size: int
    sparse: tuple | None = None


@dataclass
class Extracted:
    members: dict[str, Member]   # extracted name -> its bytes in the archive (only the names asked for)
    stored_names: dict[str, str]  # extracted name -> the member's name as stored (for messages and records)
    notes: list[str]


class _Unfollowable(Exception):
    pass


def extracted_name(name: str) -> str | None:
    """The path ``tar -x`` writes a member to (None: it writes none; ``..`` in the name)."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    return "/".join(parts)


def _resolve(nodes: dict, dirs: set, name: str, follow_last: bool = True):
    """The node ``name`` reaches through symbolic links in the tree ``nodes`` (path -> node; ``dirs``: the
    directories extraction made for them), or ``_Unfollowable`` saying why not."""
    done: list[str] = []
    pending = list(reversed(name.split("/")))
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                raise _Unfollowable("leads above the archive's root")
            done.pop()
            continue
        node = nodes.get("/".join(done + [part]))
        if node is not None and node[0] == SYMLINK and (follow_last or pending):
            hops += 1
            if hops > MAX_SYMLINKS:
                raise _Unfollowable(f"goes through more than {MAX_SYMLINKS} symbolic links (a loop)")
            if node[1].startswith("/"):
                raise _Unfollowable(f"leads outside the archive, to {node[1]}")
            pending.extend(reversed(node[1].split("/")))
            continue
        # anything after this part, even a trailing "/" or "/.", needs a directory here (else ENOTDIR)
        if pending and (node is not None or "/".join(done + [part]) not in dirs):
            raise _Unfollowable(f"goes through {'/'.join(done + [part])}, which is no directory of the archive")
        done.append(part)
    node = nodes.get("/".join(done))
    if node is None:
        raise _Unfollowable(f"leads to {'/'.join(done) or '/'}, which is no file of the archive")
    if node[0] == "broken":
        raise _Unfollowable(node[1])
    return node


def extract(path: Path, headers: list[Header], wanted: Callable[[str], bool]) -> Extracted:
    """The files ``tar -x`` gives whose extracted name is ``wanted`` (an image), each read where its bytes are."""
    nodes: dict[str, tuple] = {}
    dirs: set[str] = set()
    stored: dict[str, str] = {}
    count: collections.Counter = collections.Counter()
    not_extracted: list[str] = []
    for h in headers:
        name = extracted_name(h.name)
        if name and h.name.endswith("/") and wanted(name):
            # GNU tar removes what is there, then may or may not write the member: no reading is the extraction's
            raise SenetZooError(path, f"member {h.name}: a {h.kind} named like a directory, which tar -x and Python's "
                                "tarfile extract differently")
        if not name:
            if name is None:
                not_extracted.append(h.name)
            continue
        if nodes.get(name, ("",))[0] == SYMLINK:
            # GNU tar may put the link back over its replacement at the end (its delayed links), tarfile writes
            # through it: no reading is the extraction's
            raise SenetZooError(path, f"member {h.name} replaces a symbolic link of the same name, which tar -x "
                                "and Python's tarfile extract differently")
        if h.kind in (FILE, UNKNOWN):
            nodes[name] = (FILE, Member(h.data, h.size, h.sparse))
        elif h.kind == SYMLINK:
            nodes[name] = (SYMLINK, h.link)
        elif h.kind == HARDLINK:
            target = extracted_name(h.link)
            try:
                nodes[name] = _resolve(nodes, dirs, target, follow_last=False) if target else None
            except _Unfollowable:
                nodes[name] = None
            if nodes[name] is None:
                nodes[name] = ("broken", f"is a hard link to {h.link}, which is not extracted before it")
        stored[name] = h.name
        count[name] += 1
        parts = name.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    members: dict[str, Member] = {}
    for name in nodes:
        if not wanted(name):
            continue
        try:
            node = _resolve(nodes, dirs, name)
        except _Unfollowable as e:
            what = f" (a symbolic link to {nodes[name][1]})" if nodes[name][0] == SYMLINK else ""
            raise SenetZooError(path, f"member {stored[name]}{what} {e}: tar -x gives no image there; extract "
                                "the tar and check the link, or remove it") from None
        member = node[1]
        if member.sparse is not None:
            _check_sparse(path, stored[name], member)
        members[name] = member
    notes = []
    twice = sorted(n for n, k in count.items() if k > 1 and n in members)
    if twice:
        notes.append(f"{path.name}: {len(twice)} image name{'s occur' if len(twice) > 1 else ' occurs'} more than "
                     f"once ({_listed(twice)}); each is read from its last member, as tar -x leaves it")
    skipped = [n for n in not_extracted if wanted(n.rsplit("/", 1)[-1])]
    if skipped:
        notes.append(f"{path.name}: {len(skipped)} member{'s' if len(skipped) > 1 else ''} with '..' in the name "
                     f"not read ({_listed(skipped)}), as tar -x does not extract them")
    return Extracted(members, {n: stored[n] for n in members}, notes)


def _check_sparse(path: Path, name: str, member: Member) -> None:
    if member.size > MAX_SPARSE_BYTES:
        raise SenetZooError(path, f"member {name}: a sparse file of {member.size:,} bytes, more than the "
                            f"{MAX_SPARSE_BYTES >> 20} MiB read for one image")
    beyond = next(((o, n) for o, n in member.sparse if o + n > member.size), None)
    if beyond is not None:
        raise SenetZooError(path, f"member {name}: a damaged sparse map (bytes {beyond[0]:,}..{sum(beyond):,} of a "
                            f"file of {member.size:,})")
    # GNU tar writes (and reads) every chunk but the last in whole blocks; tarfile reads any length: they
    # would extract different files
    lengths = [n for _, n in member.sparse if n]
    if any(n % 512 for n in lengths[:-1]):
        raise SenetZooError(path, f"member {name}: a sparse map with chunks that are not whole 512-byte blocks, "
                            "which tar -x and Python's tarfile extract differently")


def _listed(names: list[str]) -> str:
    return ", ".join(names[:LISTED]) + (f", ... ({len(names) - LISTED} more)" if len(names) > LISTED else "")
