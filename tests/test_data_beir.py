"""SciFact and BEIR-layout folders: counts against SOURCE.md, the zip download path, and clear errors.

The download is tested with a zip built here from the mirror's files (BEIR's scifact.zip holds the same four
members under ``scifact/``), served through a ``file://`` URL: urllib reads it like an HTTP download.
"""
from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from labkit import data

MEMBERS = ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "qrels/train.tsv"]


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """An empty cache, no LABKIT_DATA_DIR."""
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LABKIT_DATA_DIR", raising=False)
    return tmp_path / "cache"


def files_under(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ------------------------------------------------------------------------------------------------------
# The mirror: what SOURCE.md says
# ------------------------------------------------------------------------------------------------------
def test_scifact_splits_have_the_counts_of_source_md(data_dir):
    test, train = data.load_scifact("test", data_dir=data_dir), data.load_scifact("train", data_dir=data_dir)
    assert len(test.corpus) == len(train.corpus) == 5_183
    assert (len(test.queries), sum(map(len, test.qrels.values()))) == (300, 339)
    assert (len(train.queries), sum(map(len, train.qrels.values()))) == (809, 919)
    assert not set(test.queries) & set(train.queries)  # the splits' claims are disjoint
    assert {score for docs in test.qrels.values() for score in docs.values()} == {1}
    assert len(test.pairs()) == 339 and list(test.pairs().columns) == ["anchor", "positive"]
    assert data.load_dataset("scifact", data_dir=data_dir).split == "test"


def test_scifact_texts_are_title_space_text_and_ids_stay_strings(data_dir):
    raw = [json.loads(line) for line in (data_dir / "scifact/corpus.jsonl").read_text().splitlines()[:3]]
    queries = [json.loads(line) for line in (data_dir / "scifact/queries.jsonl").read_text().splitlines()]
    scifact = data.load_scifact("test", data_dir=data_dir)
    for record in raw:
        assert scifact.corpus[record["_id"]] == record["title"] + " " + record["text"]
    claim = next(q for q in queries if q["_id"] == "1")  # the first test claim (SOURCE.md: train first, then test)
    assert list(scifact.queries)[0] == "1" and scifact.queries["1"] == claim["text"]
    # SOURCE.md's spot check: claim 279 cites doc 14376683
    assert scifact.qrels.get("279", data.load_scifact("train", data_dir=data_dir).qrels.get("279")) == {"14376683": 1}


def test_scifact_checksums_are_the_full_values_of_source_md(data_dir):
    source = (data_dir / "scifact/SOURCE.md").read_text()
    for member, (size, sha) in data.SCIFACT_FILES.items():
        assert re.search(rf"`{re.escape(member)}` `{sha}`", source), member
        assert f"{size:,}" in source
        assert hashlib.sha256((data_dir / "scifact" / member).read_bytes()).hexdigest() == sha


# ------------------------------------------------------------------------------------------------------
# Download: BEIR's zip → cache, verified; a damaged zip leaves nothing behind
# ------------------------------------------------------------------------------------------------------
def beir_zip(data_dir: Path, target: Path, damage=None) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for member in MEMBERS:
            body = (data_dir / "scifact" / member).read_bytes()
            if damage == member:
                body = body.replace(b"a", b"e", 1)  # same size, other bytes
            archive.writestr(f"scifact/{member}", body)
    return target


def serve_zip(monkeypatch, path: Path) -> None:
    spec = data.SOURCES["scifact/scifact.zip"]
    monkeypatch.setitem(data.SOURCES, spec.relpath, replace(spec, url=path.as_uri()))


def test_scifact_downloads_the_zip_once_verifies_and_reads_the_same(data_dir, monkeypatch, isolated, tmp_path):
    serve_zip(monkeypatch, beir_zip(data_dir, tmp_path / "scifact.zip"))
    downloaded = data.load_scifact("test")
    assert files_under(isolated) == ["scifact/corpus.jsonl", "scifact/qrels/test.tsv", "scifact/queries.jsonl",
                                     "scifact/scifact.zip"]
    (tmp_path / "scifact.zip").unlink()  # a second download would now fail
    mirror = data.load_scifact("train", data_dir=data_dir)
    assert data.load_scifact("train").qrels == mirror.qrels  # extracted from the cached zip
    reference = data.load_scifact("test", data_dir=data_dir)
    assert (downloaded.corpus, downloaded.queries, downloaded.qrels) == (reference.corpus, reference.queries,
                                                                         reference.qrels)


@pytest.mark.parametrize("how", ["altered member", "truncated zip"])
def test_a_damaged_scifact_download_is_a_clear_error_and_leaves_nothing(data_dir, monkeypatch, isolated, tmp_path, how):
    archive = beir_zip(data_dir, tmp_path / "scifact.zip", damage="corpus.jsonl" if how == "altered member" else None)
    if how == "truncated zip":
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    serve_zip(monkeypatch, archive)
    with pytest.raises(data.DataUnavailableError) as error:
        data.load_scifact("test")
    message = str(error.value)
    assert "scifact/corpus.jsonl" in message and "LABKIT_DATA_DIR" in message
    assert ("SHA-256" in message) if how == "altered member" else ("BadZipFile" in message or "zip" in message)
    assert "scifact/corpus.jsonl" not in files_under(isolated) and "scifact/scifact.zip" not in files_under(isolated)
    assert not [name for name in files_under(isolated) if name.endswith(".part")]


def test_a_scifact_file_in_a_data_folder_that_fails_its_checksum_is_named(data_dir, tmp_path):
    folder = tmp_path / "mirror"
    for member in MEMBERS:
        (folder / "scifact" / member).parent.mkdir(parents=True, exist_ok=True)
        (folder / "scifact" / member).write_bytes((data_dir / "scifact" / member).read_bytes())
    (folder / "scifact/qrels/test.tsv").write_text("query-id\tcorpus-id\tscore\n1\t31715818\t1\n")
    with pytest.raises(data.CorruptDataError, match=r"qrels/test.tsv.*SHA-256"):
        data.load_scifact("test", data_dir=folder)


def test_prefetch_copies_scifact_from_a_data_folder(data_dir, isolated):
    done = data.download("scifact", data_dir=data_dir, progress=False)
    assert files_under(isolated) == sorted(f"scifact/{member}" for member in MEMBERS)
    assert len(done["scifact"]) == 4


# ------------------------------------------------------------------------------------------------------
# Any BEIR folder: the errors say what is wrong
# ------------------------------------------------------------------------------------------------------
def beir_folder(root: Path, docs=None, queries=None, qrels=None, split="test") -> Path:
    docs = docs if docs is not None else [{"_id": "d1", "title": "T", "text": "one"}, {"_id": "d2", "text": "two"}]
    queries = queries if queries is not None else [{"_id": "q1", "text": "first"}, {"_id": "q2", "text": "second"}]
    qrels = qrels if qrels is not None else "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td1\t0\n"
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels" / f"{split}.tsv").write_text(qrels)
    return root


def test_a_beir_folder_reads_into_plain_dictionaries(tmp_path):
    beir = data.load_beir(beir_folder(tmp_path / "toy"), "test")
    assert beir.corpus == {"d1": "T one", "d2": "two"}  # a missing title: the text alone
    assert beir.queries == {"q1": "first", "q2": "second"}
    assert beir.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d1": 0}}
    assert beir.name == "toy" and beir.split == "test"
    assert beir.pairs().values.tolist() == [["first", "T one"], ["second", "two"]]  # score 0 is not a positive


def test_only_the_queries_of_the_split_are_kept(tmp_path):
    folder = beir_folder(tmp_path / "toy", qrels="query-id\tcorpus-id\tscore\nq2\td1\t1\n")
    assert data.load_beir(folder).queries == {"q2": "second"}


@pytest.mark.parametrize("files, qrels, match", [
    ({}, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td1\t1\nq8\td7\t1\n",
     r"2 \('q9', 'q8'\) query id\(s\) not in queries.jsonl; 1 \('d7'\) doc id\(s\) not in corpus.jsonl"),
    ({"queries": [{"_id": "q1", "text": "  "}, {"_id": "q2", "text": "x"}]}, None, r"1 \('q1'\) quer.*empty text"),
    ({"docs": [{"_id": "d1", "text": "a"}, {"_id": "d1", "text": "b"}, {"_id": "d2", "text": "c"}]}, None,
     r"repeats 1 \('d1'\) document id"),
    ({"docs": [{"_id": "d1", "text": "a"}, {"_id": "d2", "title": "", "text": ""}]}, None, r"1 \('d2'\).*neither"),
    ({"queries": [{"id": "q1", "text": "a"}]}, None, r"line 1 has no \"_id\""),
    ({}, "qid\tdocid\trel\nq1\td1\t1\n", r"header query-id\tcorpus-id\tscore"),
    ({}, "query-id\tcorpus-id\tscore\nq1\td1\thigh\n", r"1 row\(s\), data rows 0.*integer score"),
    ({}, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t2\n", r"\('q1', 'd1'\).*two different scores"),
    ({}, "query-id\tcorpus-id\tscore\n", r"no rows"),
])
def test_bad_beir_folders_get_clear_errors(tmp_path, files, qrels, match):
    folder = beir_folder(tmp_path / "bad", qrels=qrels, **files)
    with pytest.raises(ValueError, match=match):
        data.load_beir(folder)


def test_a_line_that_is_not_json_is_named(tmp_path):
    folder = beir_folder(tmp_path / "bad")
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": \n')
    with pytest.raises(ValueError, match=r"corpus.jsonl line 2 is not JSON"):
        data.load_beir(folder)


def test_a_missing_file_or_split_lists_what_the_folder_has(tmp_path):
    folder = beir_folder(tmp_path / "toy", split="dev")
    with pytest.raises(FileNotFoundError, match=r"qrels/test.tsv.*its qrels splits are: dev"):
        data.load_beir(folder, "test")
    (folder / "corpus.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing .*corpus.jsonl"):
        data.load_beir(folder, "dev")
    with pytest.raises(ValueError, match="train, test"):
        data.load_scifact("dev")


# ------------------------------------------------------------------------------------------------------
# Your own (query, passage[, negative…]) file
# ------------------------------------------------------------------------------------------------------
def test_load_pairs_reads_csv_and_jsonl_with_negatives(tmp_path):
    (tmp_path / "pairs.csv").write_text("query,passage,negative\n123,NA,wrong one\nwhy?,because,no\n")
    pairs = data.load_pairs(tmp_path / "pairs.csv")
    assert pairs.values.tolist() == [["123", "NA", "wrong one"], ["why?", "because", "no"]]  # texts stay text
    assert list(pairs.columns) == ["anchor", "positive", "negative"]
    rows = [{"anchor": "a", "positive": "p", "negative_1": "n1", "negative_2": "n2", "id": 7}]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert data.load_pairs(tmp_path / "pairs.jsonl").values.tolist() == [["a", "p", "n1", "n2"]]
    assert list(data.load_pairs(tmp_path / "pairs.jsonl").columns) == ["anchor", "positive", "negative_1",
                                                                     "negative_2"]
    (tmp_path / "qa.tsv").write_text("q\ta\nx\ty\n")
    assert data.load_pairs(tmp_path / "qa.tsv", query_column="q", passage_column="a").values.tolist() == [["x", "y"]]


def test_load_pairs_errors_name_columns_and_rows(tmp_path):
    (tmp_path / "bad.csv").write_text("question,text\nq,t\n")
    with pytest.raises(ValueError, match=r"no passage column .*its columns are question, text"):
        data.load_pairs(tmp_path / "bad.csv")
    (tmp_path / "gap.csv").write_text("query,passage\nq,\nr,s\n")
    with pytest.raises(ValueError, match=r"'passage' has empty .*data rows 0"):
        data.load_pairs(tmp_path / "gap.csv")
    with pytest.raises(FileNotFoundError):
        data.load_pairs(tmp_path / "none.csv")
