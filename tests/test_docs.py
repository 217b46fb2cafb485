"""The README says what the code does: its commands are the ones the scripts and tests run. It stays a short
guide (results first); the details live in docs/, and every citation of a docs page names a heading or bug
that exists. Each check is a small function, tested here once on a wrong README so that it can fail."""

import functools
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
DOCS = sorted((REPO / "docs").glob("*.md"))
MAX_README_LINES = 265
RESULTS_BEFORE_LINE = 120
FORBIDDEN = ("reference-spec", "../shared", "spec section")  # files outside the repository
NOT_SOURCES = {".git", ".venv", "runs", "data", ".pytest_cache", "__pycache__"}
# File names the texts cite that no repository holds: what a run writes, what a data set or another project ships,
# and a made-up example. Any other cited name must be a file of this repository.
OUTSIDE_NAMES = {"config.yaml", "results.md", "summary.md", "aflw_train_images.txt", "aflw_test_images.txt",
                 "_images.txt", "training.txt", "testing.txt", "list_landmarks_align_celeba.txt", "LICENSE.md",
                 "other.yaml"}
CITED_FILE = re.compile(r"(?<![\w/.~$<>-])((?:[\w.-]+/)*[\w-]+\.(?:md|py|sh|yaml|toml|txt))(?![\w/])")


def lines_outside_fences(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) for every line not inside a ``` or ~~~ fenced block (fences excluded)."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        marker = line.lstrip()[:3]
        if marker in ("```", "~~~"):
            fence = None if fence == marker else (fence or marker)
            continue
        if fence is None:
            out.append((number, line))
    return out


def headings(text: str) -> list[tuple[int, str]]:
    """(line number, heading text) of every Markdown ATX heading outside fenced blocks."""
    return [(n, m.group(1).strip()) for n, line in lines_outside_fences(text)
            if (m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line))]


def first_heading_line(text: str, word: str) -> int | None:
    return next((n for n, title in headings(text) if word in title), None)


def first_fenced_block(text: str) -> list[str]:
    """The lines inside the first fenced code block."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("```"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    return lines[start + 1:end]


def forbidden_mentions(text: str) -> list[str]:
    return [word for word in FORBIDDEN if word in text.lower()]


def missing_doc_paths(text: str, base: Path) -> list[str]:
    """Every docs/*.md path the text mentions (links, code spans, prose) that does not exist under `base`."""
    paths = set(re.findall(r"(?<![\w/.-])(?:\./)?(docs/[\w./-]*?\.md)\b", text))
    return sorted(p for p in paths if not (base / p).is_file())


def cited_headings(text: str) -> list[tuple[str, str]]:
    """(page, heading) for each citation `docs/X.md, "Heading"`, `README, "Heading"` or `[..](X.md), "Heading"`."""
    quoted = r"""["']([^"'\n]{2,60})["']"""
    found = re.findall(r"(docs/[\w.-]+\.md|README)[,:]? " + quoted, text)
    found += [(p, h) for p, h in re.findall(r"\]\(((?:docs/)?[\w.-]+\.md)\)[,:]? " + quoted, text)]
    return found


def numbered_items(text: str, section: str) -> dict[int, str]:
    """The numbered list items (number -> text, continuation lines joined) under the heading `section`."""
    body = text[text.index(f"## {section}\n"):]
    items, current = {}, None
    for line in body.splitlines()[1:]:
        if line.startswith("#"):
            break
        if m := re.match(r"(\d+)\. (.*)", line):
            current = int(m.group(1))
            items[current] = m.group(2)
        elif current is not None and line.startswith("   "):
            items[current] += " " + line.strip()
        elif line.strip():
            current = None
    return items


@functools.cache
def repository_names() -> tuple[set[str], set[str]]:
    """(the repository's top-level names, the names of all its files and folders), NOT_SOURCES left out."""
    names = set()
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [d for d in subfolders if d not in NOT_SOURCES]
        names.update(subfolders, files)
    return {p.name for p in REPO.iterdir()} - NOT_SOURCES, names


def missing_cited_files(text: str, page: Path) -> list[str]:
    """The files a text (of the file `page`) cites that the repository lacks: a path whose first folder is one of
    the repository's (`docs/x.md`, `scripts/y.sh`), a bare file name found nowhere in it (`paper-results.md`;
    OUTSIDE_NAMES excepted), and in a Markdown page a relative link target, resolved from the page's folder."""
    top, names = repository_names()
    missing = []
    for cited in CITED_FILE.findall(text):
        if "/" in cited and cited.split("/")[0] in top and not (REPO / cited).exists():
            missing.append(cited)
        elif "/" not in cited and cited not in names and cited not in OUTSIDE_NAMES:
            missing.append(cited)
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if page.suffix == ".md" else []:
        if "://" not in target and not (page.parent / target).exists():
            missing.append(target)
    return sorted(set(missing))


def source_texts() -> dict[Path, str]:
    """The repository's own text files that can cite docs (code, configs, scripts, docs, README)."""
    files = {}
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO)
        if (path.suffix in (".py", ".yaml", ".sh", ".md") and not NOT_SOURCES & set(rel.parts) and path.is_file()
                and path != Path(__file__).resolve()):  # this file's examples are not citations
            files[rel] = path.read_text()
    return files


WRONG_README = """# Title

```bash
bash scripts/test.sh
bash scripts/quickstart.sh
```

```text
## Results (inside a code block: not a heading)
```
See reference-spec.md and [configs](docs/nowhere.md); the numbers are in paper-tables.md and scripts/gone.sh.
""" + "filler\n" * 300


def test_the_checks_fail_on_a_wrong_readme():
    assert first_heading_line(WRONG_README, "Results") is None
    assert len(WRONG_README.splitlines()) > MAX_README_LINES
    assert [line.split("#")[0].strip() for line in first_fenced_block(WRONG_README)] != [
        "bash scripts/quickstart.sh", "bash scripts/test.sh"]
    assert forbidden_mentions(WRONG_README) == ["reference-spec"]
    assert missing_doc_paths(WRONG_README, REPO) == ["docs/nowhere.md"]
    assert missing_cited_files(WRONG_README, REPO / "README.md") == [
        "docs/nowhere.md", "paper-tables.md", "reference-spec.md", "scripts/gone.sh"]
    assert cited_headings('see docs/experiments.md, "No such heading"') == [("docs/experiments.md", "No such heading")]


def test_the_readme_is_short_and_shows_results_early():
    assert len(README.splitlines()) <= MAX_README_LINES, "move details into docs/"
    line = first_heading_line(README, "Results")
    assert line is not None and line < RESULTS_BEFORE_LINE, f"the Results heading is at line {line}"


def test_the_readme_starts_with_the_two_commands():
    block = first_fenced_block(README)
    commands = [line.split("#")[0].strip() for line in block]
    assert commands == ["bash scripts/quickstart.sh", "bash scripts/test.sh"], block
    assert all("#" in line for line in block)  # each says what it does
    assert "source .venv/bin/activate" in README and 'bash scripts/test.sh -m "not slow"' in README


def test_readme_and_docs_refer_to_no_file_outside_the_repository():
    for path, text in [(REPO / "README.md", README)] + [(p, p.read_text()) for p in DOCS]:
        assert not forbidden_mentions(text), f"{path.name} mentions {forbidden_mentions(text)}"


def test_every_docs_page_the_readme_names_exists():
    assert missing_doc_paths(README, REPO) == []
    assert re.search(r"\]\(docs/\w+\.md\)", README)  # the README links its docs pages
    for page in DOCS:  # and the pages link each other by relative paths
        for target in re.findall(r"\]\(([\w.-]+\.md)\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to a missing {target}"


def test_every_file_the_texts_cite_or_link_is_in_the_repository():
    missing = {str(rel): names for rel, text in source_texts().items()
               if rel.parts[0] != "tests" and (names := missing_cited_files(text, REPO / rel))}
    assert missing == {}


def test_every_cited_heading_and_bug_exists():
    pages = {"README": README} | {f"docs/{p.name}": p.read_text() for p in DOCS}
    titles = {name: {title for _, title in headings(text)} for name, text in pages.items()}
    bugs = numbered_items(pages["docs/reference.md"], "Bugs")
    assert sorted(bugs) == list(range(1, len(bugs) + 1)) and len(bugs) >= 20
    for rel, text in source_texts().items():
        for page, heading in cited_headings(text):
            page = page if page == "README" or page.startswith("docs/") else f"docs/{page}"
            assert heading in titles[page], f'{rel} cites {page}, "{heading}", which has no such heading'
        for number in re.findall(r"docs/reference\.md, bug (\d+)", text):
            assert int(number) in bugs, f"{rel} cites docs/reference.md, bug {number}"
    # the numbers the code cites: 8 is the backward error's hard-coded 10, 9 the few-shot off-by-one
    assert "--reference-backward" in bugs[8] and "10" in bugs[8]
    assert "--reference-fewshot" in bugs[9] and "N + 1" in bugs[9]


def test_the_docs_config_table_is_the_generated_one(capsys):
    import train

    page = (REPO / "docs" / "configs.md").read_text()
    start = page.index("<!-- config table: generated by `python train.py --print-config markdown`")
    table = page[page.index("\n", start) + 1:page.index("<!-- end of config table -->")]
    assert train.main(["--print-config", "markdown"]) == 0
    assert capsys.readouterr().out == table, "regenerate it: python train.py --print-config markdown"


def test_the_readme_quickstart_commands_are_the_scripts():
    marker = "<!-- quickstart commands: copied from scripts/quickstart.sh"
    block = README[README.index(marker):]
    block = block[block.index("```bash\n") + len("```bash\n"):]
    block = block[:block.index("\n```")]
    script = (REPO / "scripts" / "quickstart.sh").read_text()
    assert block in script and "-m datasets.synthetic" in block and "eval_regressor.py" in block
    assert block.count("--out") == script.count("--out")  # every output folder is named, as in the script


def test_the_readme_torchrun_lines_are_the_tested_single_node_form_and_a_c10d_rendezvous():
    lines = [line for line in README.splitlines() if line.startswith("torchrun ")]
    single, multi = lines
    # tests/test_train.py::test_two_process_ddp_keeps_ranks_identical runs `torch.distributed.run --standalone
    # --nproc_per_node 2 train.py`: the same form
    assert single.split()[:4] == ["torchrun", "--standalone", "--nproc_per_node", "4"]
    tested = (REPO / "tests" / "test_train.py").read_text()
    assert re.search(r'"--standalone", "--nproc_per_node", "2",\s+"train.py"', tested)
    options = multi.split()
    assert options[options.index("--rdzv-backend") + 1] == "c10d" and "--rdzv-endpoint" in options
