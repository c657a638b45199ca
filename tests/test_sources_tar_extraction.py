"""What ``tar -x`` lays out from a tar's members (``sources.tar.extraction``), checked on hand-written member
lists: every expectation is a literal, worked out from GNU tar's rules (names normalised, the last member of a
name wins, hard links made to what exists at that moment, symbolic links followed relative to their folder, at
most 40 of them, as Linux resolves a path) and from the exact one-line messages users see.

In-process and fast: ``extract`` reads no archive (the path is only named in messages).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from senet_zoo.errors import SenetZooError
from senet_zoo.validation.sources.tar.extraction import MAX_SPARSE_BYTES, MAX_SYMLINKS, Member, extract, extracted_name
from senet_zoo.validation.sources.tar.headers import FILE, HARDLINK, SYMLINK, UNKNOWN, Header

TAR = Path("/data/v.tar")
TAIL = ": tar -x gives no image there; extract the tar and check the link, or remove it"


def jpeg(name: str) -> bool:
    return name.endswith(".JPEG")


def f(name: str, data: int = 512, size: int = 10, sparse=None) -> Header:
    return Header(data - 512, FILE, name, data, size, "", sparse)


def sym(name: str, link: str) -> Header:
    return Header(0, SYMLINK, name, 512, 0, link)


def hard(name: str, link: str) -> Header:
    return Header(0, HARDLINK, name, 512, 0, link)


def refused(headers, wanted=jpeg) -> str:
    with pytest.raises(SenetZooError) as e:
        extract(TAR, headers, wanted)
    return str(e.value)


@pytest.mark.parametrize("stored, written", [
    ("a/b.JPEG", "a/b.JPEG"), ("/a//./b.JPEG", "a/b.JPEG"), ("./x.JPEG", "x.JPEG"), ("..a/b..JPEG", "..a/b..JPEG"),
    ("a/../b.JPEG", None), ("../b.JPEG", None), ("a/..", None), ("./", ""), ("/", ""),
])
def test_the_name_tar_x_writes_a_member_to(stored, written):
    assert extracted_name(stored) == written


def test_files_are_read_where_their_bytes_lie_under_their_extracted_names():
    headers = [f("./val/a.JPEG", 512, 10), f("/val//b.JPEG", 1536, 700), f("val/c.txt", 3072, 3),
               Header(3584, UNKNOWN, "val/z.JPEG", 4096, 5)]
    got = extract(TAR, headers, jpeg)
    assert got.members == {"val/a.JPEG": Member(512, 10), "val/b.JPEG": Member(1536, 700),
                           "val/z.JPEG": Member(4096, 5)}
    assert got.stored_names == {"val/a.JPEG": "./val/a.JPEG", "val/b.JPEG": "/val//b.JPEG",
                                "val/z.JPEG": "val/z.JPEG"}
    assert got.notes == []


def test_the_last_member_of_a_name_wins_and_duplicates_are_noted():
    headers = [f("a.JPEG", 512, 1), f("./a.JPEG", 2048, 2), f("n.txt", 4096), f("n.txt", 5120)]
    got = extract(TAR, headers, jpeg)
    assert got.members == {"a.JPEG": Member(2048, 2)} and got.stored_names == {"a.JPEG": "./a.JPEG"}
    assert got.notes == ["v.tar: 1 image name occurs more than once (a.JPEG); each is read from its last member, "
                         "as tar -x leaves it"]
    headers = [f(f"{n}.JPEG") for n in "bacbac"] + [f("c.JPEG")]
    assert extract(TAR, headers, jpeg).notes == [
        "v.tar: 3 image names occur more than once (a.JPEG, b.JPEG, c.JPEG); each is read from its last member, "
        "as tar -x leaves it"]


def test_members_with_dot_dot_are_not_read_and_noted_up_to_five_names():
    one = extract(TAR, [f("a.JPEG"), f("../up.JPEG"), f("x/../y.txt")], jpeg)
    assert one.members == {"a.JPEG": Member(512, 10)}
    assert one.notes == ["v.tar: 1 member with '..' in the name not read (../up.JPEG), as tar -x does not "
                         "extract them"]
    five = extract(TAR, [f(f"../{i}.JPEG") for i in range(5)], jpeg)
    assert five.members == {} and five.notes == [
        "v.tar: 5 members with '..' in the name not read (../0.JPEG, ../1.JPEG, ../2.JPEG, ../3.JPEG, ../4.JPEG), "
        "as tar -x does not extract them"]
    seven = extract(TAR, [f(f"../{i}.JPEG") for i in range(7)], jpeg)
    assert seven.notes == [
        "v.tar: 7 members with '..' in the name not read (../0.JPEG, ../1.JPEG, ../2.JPEG, ../3.JPEG, ../4.JPEG, "
        "... (2 more)), as tar -x does not extract them"]
    # a name that normalises to nothing ("./") is no file and no note
    assert extract(TAR, [f("./"), f("/")], lambda n: True).notes == []


def test_a_hard_link_is_the_file_its_target_names_at_that_moment():
    headers = [f("d/a.JPEG", 512, 1), hard("d/kept.JPEG", "./d/a.JPEG"), f("d/a.JPEG", 2048, 2),
               hard("d/new.JPEG", "d/a.JPEG")]
    got = extract(TAR, headers, jpeg)
    assert got.members == {"d/a.JPEG": Member(2048, 2), "d/kept.JPEG": Member(512, 1), "d/new.JPEG": Member(2048, 2)}
    assert got.stored_names["d/kept.JPEG"] == "d/kept.JPEG"


def test_a_hard_link_goes_through_symbolic_links_on_the_way_but_links_the_last_one_itself():
    # link(2) follows the folders' links but not the last component: h.JPEG becomes the symbolic link, read from
    # its own folder (the root), where x.JPEG does not exist
    headers = [f("sub/x.JPEG", 512, 7), sym("sub/s", "x.JPEG"), sym("l", "sub"), hard("via.JPEG", "l/x.JPEG"),
               hard("h.JPEG", "sub/s")]
    assert extract(TAR, headers[:4], jpeg).members == {"sub/x.JPEG": Member(512, 7), "via.JPEG": Member(512, 7)}
    assert refused(headers) == (f"{TAR}: member h.JPEG (a symbolic link to x.JPEG) leads to x.JPEG, which is no "
                                f"file of the archive{TAIL}")


@pytest.mark.parametrize("link", ["later.JPEG", "../a.JPEG", "./", "a.JPEG/x", "/later.JPEG"])
def test_a_hard_link_to_nothing_extracted_before_it_is_refused(link):
    headers = [f("a.JPEG"), hard("h.JPEG", link), f("later.JPEG")]
    assert refused(headers) == (f"{TAR}: member h.JPEG is a hard link to {link}, which is not extracted before it"
                                f"{TAIL}")


def test_a_broken_hard_link_reached_through_a_symbolic_link_says_why():
    headers = [hard("h.JPEG", "none.JPEG"), sym("s.JPEG", "h.JPEG")]
    assert extract(TAR, headers, lambda n: n == "x").members == {}
    assert refused(headers, lambda n: n == "s.JPEG") == (
        f"{TAR}: member s.JPEG (a symbolic link to h.JPEG) is a hard link to none.JPEG, which is not extracted "
        f"before it{TAIL}")


def test_symbolic_links_are_followed_relative_to_their_folder():
    headers = [f("a/x.JPEG", 512, 1), f("b/y.JPEG", 1024, 2), sym("b/s.JPEG", "../a/x.JPEG"),
               sym("b/t.JPEG", "./s.JPEG"), sym("l", "a"), sym("c/u.JPEG", "../l/x.JPEG"),
               sym("c/v.JPEG", "..//b/.//y.JPEG")]
    got = extract(TAR, headers, jpeg)
    assert got.members == {"a/x.JPEG": Member(512, 1), "b/y.JPEG": Member(1024, 2), "b/s.JPEG": Member(512, 1),
                           "b/t.JPEG": Member(512, 1), "c/u.JPEG": Member(512, 1), "c/v.JPEG": Member(1024, 2)}
    assert got.stored_names["b/t.JPEG"] == "b/t.JPEG"


def _chain(links: int) -> list[Header]:
    """s0.JPEG -> s1.JPEG -> ... -> s{links-1}.JPEG -> x.JPEG: reading s0.JPEG follows ``links`` links."""
    return [f("x.JPEG", 512, 3)] + [sym(f"s{i}.JPEG", f"s{i + 1}.JPEG" if i + 1 < links else "x.JPEG")
                                    for i in range(links)]


def test_at_most_forty_symbolic_links_are_followed_for_one_path():
    assert MAX_SYMLINKS == 40
    assert extract(TAR, _chain(40), lambda n: n == "s0.JPEG").members == {"s0.JPEG": Member(512, 3)}
    assert refused(_chain(41), lambda n: n == "s0.JPEG") == (
        f"{TAR}: member s0.JPEG (a symbolic link to s1.JPEG) goes through more than 40 symbolic links (a loop)"
        f"{TAIL}")


@pytest.mark.parametrize("link, problem", [
    ("/etc/x.JPEG", "leads outside the archive, to /etc/x.JPEG"),
    ("../../x.JPEG", "leads above the archive's root"),
    ("..", "leads to /, which is no file of the archive"),
    ("../d", "leads to d, which is no file of the archive"),
    ("../x.JPEG/y.JPEG", "goes through x.JPEG, which is no directory of the archive"),
    ("../no/../x.JPEG", "goes through no, which is no directory of the archive"),
    ("none.JPEG", "leads to d/none.JPEG, which is no file of the archive"),
])
def test_a_symbolic_link_that_cannot_be_followed_inside_the_archive_is_refused(link, problem):
    headers = [f("x.JPEG"), f("d/y.JPEG"), sym("d/s.JPEG", link)]
    assert refused(headers, lambda n: n == "d/s.JPEG") == (
        f"{TAR}: member d/s.JPEG (a symbolic link to {link}) {problem}{TAIL}")


def test_a_symbolic_link_to_a_folder_link_followed_by_a_name_resolves():
    headers = [f("d/y.JPEG", 512, 4), sym("e", "d"), sym("s.JPEG", "e/./y.JPEG"), sym("t.JPEG", "e/../d/y.JPEG")]
    got = extract(TAR, headers, jpeg)
    assert got.members == {"d/y.JPEG": Member(512, 4), "s.JPEG": Member(512, 4), "t.JPEG": Member(512, 4)}


def test_only_wanted_names_are_resolved():
    # a broken link that is no image is no concern; the unwanted file is not returned
    headers = [f("a.JPEG"), sym("bad.txt", "/etc/passwd"), f("b.txt")]
    got = extract(TAR, headers, jpeg)
    assert got.members == {"a.JPEG": Member(512, 10)} and got.stored_names == {"a.JPEG": "a.JPEG"}


def test_a_member_named_like_a_directory_is_refused_when_it_names_an_image():
    assert refused([f("a.JPEG"), f("a.JPEG/")]) == (
        f"{TAR}: member a.JPEG/: a file named like a directory, which tar -x and Python's tarfile extract "
        "differently")
    assert refused([sym("s.JPEG//", "a.JPEG")]).startswith(f"{TAR}: member s.JPEG//: a symlink named like")
    # not an image: kept under the name without the slash (here reached through a link)
    got = extract(TAR, [f("x.txt/", 1024, 4), sym("s.JPEG", "x.txt")], jpeg)
    assert got.members == {"s.JPEG": Member(1024, 4)}


def test_a_member_replacing_a_symbolic_link_is_refused():
    message = f"{TAR}: member {{}} replaces a symbolic link of the same name, which tar -x and Python's tarfile " \
              "extract differently"
    assert refused([f("a.JPEG"), sym("b.JPEG", "a.JPEG"), f("./b.JPEG")]) == message.format("./b.JPEG")
    assert refused([f("a.JPEG"), sym("b.txt", "a.JPEG"), sym("b.txt", "a.JPEG")]) == message.format("b.txt")
    # a file replaced by a link is fine: the link is what is left
    got = extract(TAR, [f("a.JPEG", 512, 1), f("b.JPEG", 1024, 2), sym("b.JPEG", "a.JPEG")], jpeg)
    assert got.members == {"a.JPEG": Member(512, 1), "b.JPEG": Member(512, 1)}


def sparse_file(size: int, chunks: tuple) -> list[Header]:
    return [f("s.JPEG", 512, size, chunks)]


def test_a_sparse_member_is_read_whole_within_bounds():
    assert MAX_SPARSE_BYTES == 256 * 1024 * 1024
    chunks = ((0, 512), (4096, 100), (MAX_SPARSE_BYTES, 0))
    got = extract(TAR, sparse_file(MAX_SPARSE_BYTES, chunks), jpeg)
    assert got.members == {"s.JPEG": Member(512, MAX_SPARSE_BYTES, chunks)}
    assert refused(sparse_file(MAX_SPARSE_BYTES + 1, ((0, 512),))) == (
        f"{TAR}: member s.JPEG: a sparse file of 268,435,457 bytes, more than the 256 MiB read for one image")


def test_a_sparse_map_reaching_past_the_file_is_refused():
    ok = ((0, 512), (1000, 1000))
    assert extract(TAR, sparse_file(2000, ok), jpeg).members["s.JPEG"].sparse == ok
    assert refused(sparse_file(1999, ok)) == (
        f"{TAR}: member s.JPEG: a damaged sparse map (bytes 1,000..2,000 of a file of 1,999)")
    assert refused(sparse_file(5000, ((0, 512), (4000, 1024), (6000, 0)))) == (
        f"{TAR}: member s.JPEG: a damaged sparse map (bytes 4,000..5,024 of a file of 5,000)")


def test_sparse_chunks_but_the_last_must_be_whole_blocks():
    # empty chunks (GNU tar's final (size, 0) entry) do not count as the last
    assert extract(TAR, sparse_file(3000, ((0, 1024), (2000, 100), (3000, 0))), jpeg).members
    assert extract(TAR, sparse_file(3000, ((0, 0), (1000, 512), (2000, 7))), jpeg).members
    message = (f"{TAR}: member s.JPEG: a sparse map with chunks that are not whole 512-byte blocks, which tar -x "
               "and Python's tarfile extract differently")
    assert refused(sparse_file(3000, ((0, 100), (2000, 512)))) == message
    assert refused(sparse_file(3000, ((0, 512), (1000, 513), (2000, 0), (2500, 1)))) == message


@pytest.mark.parametrize("link", ["a.JPEG/", "a.JPEG/.", "./a.JPEG//"])
def test_a_symbolic_link_to_a_file_with_a_trailing_slash_is_refused_as_the_kernel_does(tmp_path, link):
    # what the extracted folder gives: opening the link fails with ENOTDIR
    (tmp_path / "a.JPEG").write_bytes(b"a")
    os.symlink(link, tmp_path / "s.JPEG")
    with pytest.raises(NotADirectoryError):
        (tmp_path / "s.JPEG").read_bytes()
    assert refused([f("a.JPEG"), sym("s.JPEG", link)], lambda n: n == "s.JPEG") == (
        f"{TAR}: member s.JPEG (a symbolic link to {link}) goes through a.JPEG, which is no directory of the "
        f"archive{TAIL}")
    # a folder with a trailing slash is a folder
    got = extract(TAR, [f("d/a.JPEG", 1024, 2), sym("s", "d/./"), sym("t.JPEG", "s/a.JPEG")], jpeg)
    assert got.members["t.JPEG"] == Member(1024, 2)


def test_links_through_nested_folders():
    headers = [f("d/e/y.JPEG", 1024, 5), sym("s.JPEG", "d/e/y.JPEG"), sym("d/t.JPEG", "e/./y.JPEG"),
               sym("u.JPEG", "d/e/y.JPEG/z.JPEG")]
    got = extract(TAR, headers[:3], jpeg)
    assert got.members == {"d/e/y.JPEG": Member(1024, 5), "s.JPEG": Member(1024, 5), "d/t.JPEG": Member(1024, 5)}
    assert refused(headers) == (f"{TAR}: member u.JPEG (a symbolic link to d/e/y.JPEG/z.JPEG) goes through "
                                f"d/e/y.JPEG, which is no directory of the archive{TAIL}")


def image(name: str) -> bool:
    """As the tar source asks: a file name (the part after the last '/') that is no hidden file, ending .JPEG."""
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.endswith(".JPEG")


def test_two_of_a_kind_are_counted_in_the_plural():
    headers = [f("a.JPEG"), f("b.JPEG"), f("a.JPEG"), f("b.JPEG"), f("../x.JPEG"), f("../y/z.JPEG")]
    assert extract(TAR, headers, image).notes == [
        "v.tar: 2 image names occur more than once (a.JPEG, b.JPEG); each is read from its last member, as tar -x "
        "leaves it",
        "v.tar: 2 members with '..' in the name not read (../x.JPEG, ../y/z.JPEG), as tar -x does not extract them"]


def test_only_dot_dot_members_named_like_images_are_noted():
    # '..' alone names nothing; a hidden file is no image even where a space follows in its name
    headers = [f(".."), f("../.x y.JPEG"), f("../d/.h.JPEG"), f("../ok.JPEG")]
    assert extract(TAR, headers, image).notes == [
        "v.tar: 1 member with '..' in the name not read (../ok.JPEG), as tar -x does not extract them"]
