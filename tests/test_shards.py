"""Tar shards in NeMo's layout (asr.data.shards) and the batches streamed from them (asr.data.shard_stream)."""

import functools
import http.server
import io
import json
import shutil
import tarfile
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("webdataset")

from torch.utils.data import DataLoader

from asr.cli import main
from asr.data.audio import decode_audio, load_audio
from asr.data.manifest import ManifestError, read_manifest
from asr.data.shard_stream import ShardPlanner, ShardStream, shard_collate
from asr.data.shards import MANIFEST_NAME, expand_urls, iter_shard, read_shard_manifest, write_shards
from asr.data.tokenizer import CharTokenizer
from asr.errors import ShardError


def write_seven(manifest, out):
    """7 shards of uneven sizes (1-3 utterances) from the 16-utterance tiny corpus."""
    for seconds in np.arange(5.0, 9.0, 0.25):
        result = write_shards(manifest, out, float(seconds), overwrite=True)
        if len(result.shards) == 7:
            return result
    raise AssertionError("no shard size gives 7 shards")


@pytest.fixture(scope="module")
def seven(tiny_corpus, tmp_path_factory):
    return write_seven(tiny_corpus["train"], tmp_path_factory.mktemp("shards"))


def stream(shards, **kw):
    kw.setdefault("max_batch_seconds", 6.0)
    return ShardStream(shards.url_pattern, read_shard_manifest(shards.manifest), CharTokenizer(), 16000, **kw)


def epoch_indices(ds, num_workers=0):
    loader = DataLoader(ds, batch_size=None, collate_fn=shard_collate, num_workers=num_workers)
    return [list(b["indices"]) for b in loader]


def test_seven_uneven_shards_round_trip_every_utterance_and_byte(tiny_corpus, seven):
    original = read_manifest(tiny_corpus["train"])
    counts = Counter(json.loads(line)["shard_id"] for line in open(seven.manifest))
    assert sorted(counts) == list(range(7)) and len(set(counts.values())) > 1  # uneven
    assert seven.url_pattern.endswith("audio_{0..6}.tar")
    lines = read_shard_manifest(seven.manifest)
    by_text = {u.text: u for u in original}
    assert sorted(u.text for u in lines) == sorted(by_text)
    for shard_id in range(7):
        path = seven.directory / f"audio_{shard_id}.tar"
        with tarfile.open(path) as tar:
            names = tar.getnames()
            members = {n: tar.extractfile(n).read() for n in names}
        mine = [u for u in lines if u.extra["shard_id"] == shard_id]
        # NeMo's layout: audio_filepath is the member name; the per-shard manifest holds the same lines
        assert [n for n in names if not n.endswith(".json")] == [u.audio_filepath for u in mine]
        per_shard = [json.loads(x) for x in open(seven.directory / "sharded_manifests" / f"manifest_{shard_id}.json")]
        assert [x["audio_filepath"] for x in per_shard] == [u.audio_filepath for u in mine]
        for u in mine:
            src = by_text[u.text]
            assert members[u.audio_filepath] == Path(src.audio_filepath).read_bytes()  # the bytes as they were
            key = u.audio_filepath.rsplit(".", 1)[0]
            sidecar = json.loads(members[f"{key}.json"])
            assert sidecar == {**src.to_json(), "audio_filepath": u.audio_filepath, "shard_id": shard_id}
        # read back through webdataset: the same keys, bytes and decoded audio
        samples = list(iter_shard(str(path), on_error=pytest.fail))
        assert [s.member for s in samples] == [u.audio_filepath for u in mine]
        for s, u in zip(samples, mine):
            np.testing.assert_array_equal(decode_audio(s.audio, s.member), load_audio(by_text[u.text].audio_filepath))


def test_a_stream_on_one_reader_yields_every_utterance_once_decoded(seven):
    ds = stream(seven)
    loader = DataLoader(ds, batch_size=None, collate_fn=shard_collate)
    batches = list(loader)
    assert len(batches) == len(ds)
    seen = [i for b in batches for i in b["indices"]]
    assert sorted(seen) == list(range(len(ds.utterances)))
    for b in batches:
        assert not b["skipped"]
        assert b["audio"].shape[0] == len(b["indices"])
        durations = [ds.utterances[i].duration for i in b["indices"]]
        assert len(durations) <= 1 or len(durations) * max(durations) <= 6.0
        for text, i in zip(b["texts"], b["indices"]):
            assert text == ds.utterances[i].text


def test_pipe_urls_and_brace_lists_read_the_same(seven):
    urls = [f"pipe:cat {seven.directory}/audio_{{0..6}}.tar"]
    assert expand_urls(urls) == [f"pipe:cat {seven.directory}/audio_{i}.tar" for i in range(7)]
    assert expand_urls("d/audio__OP_0..2_CL_.tar") == ["d/audio_0.tar", "d/audio_1.tar", "d/audio_2.tar"]  # NeMo's
    ds = ShardStream(urls, read_shard_manifest(seven.manifest), CharTokenizer(), 16000, max_batch_seconds=6.0)
    assert epoch_indices(ds) == epoch_indices(stream(seven))


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("workers", [1, 2])
def test_the_plan_gives_every_reader_the_same_count_and_every_utterance_once(world, workers):
    rng = np.random.default_rng(0)
    durations = rng.uniform(1.0, 16.0, 700)
    shard_ids = np.sort(rng.integers(0, 13, 700))  # 13 shards of uneven sizes
    planner = ShardPlanner(durations, shard_ids, 13, workers, world, 120.0, buffer_size=64, seed=3)
    for epoch in range(4):
        by_rank = [planner.rank_plan(epoch, k) for k in range(world)]
        assert {sum(len(p.batches) for p in rank) for rank in by_rank} == {len(planner)}
        plans = [p for rank in by_rank for p in rank]
        seen = [i for p in plans for b in p.batches for i in b]
        assert sorted(seen) == list(range(700))
        for p in plans:
            for b in p.batches:
                assert len(b) <= 1 or len(b) * durations[b].max() <= 120.0
                assert {shard_ids[i] for i in b} <= set(p.shards)  # a reader batches only what it reads
    assert planner.plan(1, 0).batches != planner.plan(2, 0).batches  # a new order each epoch
    assert (
        planner.plan(1, 0).batches
        == ShardPlanner(durations, shard_ids, 13, workers, world, 120.0, buffer_size=64, seed=3).plan(1, 0).batches
    )  # a pure function of (seed, epoch, reader): every rank agrees without talking


def test_more_readers_than_shards_is_an_error_that_says_what_to_do(seven):
    with pytest.raises(ShardError, match=r"7 shards .* 4 ranks x 2 readers = 8 readers.*--shard-seconds"):
        stream(seven, world_size=4, num_workers=2)


def test_a_shard_id_beyond_the_urls_names_the_line(seven):
    lines = read_shard_manifest(seven.manifest)
    urls = f"{seven.directory}/audio_{{0..5}}.tar"
    with pytest.raises(ShardError, match=r"tarred_audio_manifest.json:\d+: shard_id 6 but the shard URLs expand to 6"):
        ShardStream(urls, lines, CharTokenizer(), 16000, max_batch_seconds=6.0)


def test_a_bad_shard_manifest_line_is_named(seven, tmp_path):
    bad = tmp_path / MANIFEST_NAME
    lines = open(seven.manifest).read().splitlines()
    broken = json.loads(lines[1])
    del broken["shard_id"]
    bad.write_text("\n".join([lines[0], json.dumps(broken), *lines[2:]]) + "\n")
    with pytest.raises(ManifestError, match=r":2: 'shard_id' must be the shard's number"):
        read_shard_manifest(bad)
    errors = []
    assert len(read_shard_manifest(bad, strict=False, errors=errors)) == len(lines) - 1
    assert len(errors) == 1 and ":2:" in errors[0]


@pytest.mark.parametrize("workers", [0, 2, 3])
def test_resuming_mid_epoch_continues_with_the_next_batch(seven, workers):
    ds = stream(seven, num_workers=workers)
    ds.set_epoch(1)
    whole = epoch_indices(ds, workers)
    counts = [len(p.batches) for p in ds.planner.rank_plan(1, 0)]
    assert sum(counts) == len(whole) == len(ds)
    if workers == 3:
        assert len(set(counts)) > 1  # readers with different batch counts: the DataLoader's turns pass over some
    for position in (1, 3, len(ds) - 4, len(ds) - 1):
        resumed = stream(seven, num_workers=workers)
        resumed.load_state_dict({"epoch": 1, "position": position, "readers": max(1, workers)})
        assert epoch_indices(resumed, workers) == whole[position:]
    end = stream(seven, num_workers=workers)
    end.load_state_dict({"epoch": 1, "position": len(ds), "readers": max(1, workers)})
    assert end.epoch == 2 and end.start_position == 0  # a finished epoch continues with the next
    other = max(1, workers) + 1
    with pytest.raises(ShardError, match=f"data.num_workers={other}"):
        stream(seven, num_workers=workers).load_state_dict({"epoch": 1, "position": 1, "readers": other})


def test_a_shard_cut_short_and_a_corrupt_member_are_named_and_skipped(tiny_corpus, tmp_path):
    shards = write_seven(tiny_corpus["train"], tmp_path)
    lines = read_shard_manifest(shards.manifest)
    # shard 4 (three utterances) cut in the middle of its second member; a corrupt member in shard 5
    cut = shards.directory / "audio_4.tar"
    with tarfile.open(cut) as tar:
        second = [m for m in tar.getmembers() if not m.name.endswith(".json")][1]
    data = cut.read_bytes()
    cut.write_bytes(data[: second.offset_data + second.size // 2])
    in_cut = [u.audio_filepath for u in lines if u.extra["shard_id"] == 4]
    corrupt_name = next(u.audio_filepath for u in lines if u.extra["shard_id"] == 5)
    path5 = shards.directory / "audio_5.tar"
    with tarfile.open(path5) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path5, "w") as tar:
        for m, content in members:
            if m.name == corrupt_name:
                content = b"RIFF not really a wav file at all" * 10
                m.size = len(content)
            tar.addfile(m, io.BytesIO(content))

    ds = stream(shards)
    batches = list(DataLoader(ds, batch_size=None, collate_fn=shard_collate))
    assert len(batches) == len(ds)  # still every planned batch: the ranks' counts stay equal
    skipped = [s for b in batches for s in b["skipped"]]
    seen = {i for b in batches for i in b["indices"]}
    by_member = {s.audio_filepath.rsplit(":", 1)[-1]: str(s) for s in skipped}
    assert set(by_member) == set(in_cut[1:]) | {corrupt_name}
    for name in in_cut[1:]:
        assert f"{cut}:{name} not read" in by_member[name] and "ReadError" in by_member[name]
    assert f"{path5}:{corrupt_name}: not a readable audio file" in by_member[corrupt_name]
    assert len(seen) == len(lines) - len(skipped)  # everything else arrived


def test_asr_shard_cli_writes_the_layout_and_refuses_to_overwrite(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["shard", str(tiny_corpus["train"]), "-o", str(out), "--shard-seconds", "10"]) == 0
    pattern = capsys.readouterr().out.strip()
    n = len(list(out.glob("audio_*.tar")))
    assert pattern == f"{out}/audio_{{0..{n - 1}}}.tar" and (out / MANIFEST_NAME).is_file()
    assert main(["shard", str(tiny_corpus["train"]), "-o", str(out), "--shard-seconds", "10"]) == 2
    err = capsys.readouterr().err
    assert f"asr: error: {out} already holds {n} shards" in err and "--force to replace them" in err
    assert main(["shard", str(tiny_corpus["train"]), "-o", str(out), "--shard-seconds", "30", "--force"]) == 0
    assert len(list(out.glob("audio_*.tar"))) == 2  # the old shards beyond the new set are gone
    capsys.readouterr()
    assert main(["shard", str(tiny_corpus["train"]), "-o", str(tmp_path / "t"), "--shard-seconds", "0"]) == 2
    assert "--shard-seconds must be positive" in capsys.readouterr().err


def test_asr_train_from_shards_through_the_cli(tiny_corpus, seven, tmp_path, caplog):
    from conftest import TINY_MODEL

    out = tmp_path / "exp"
    common = ["train", "--train-manifest", str(seven.manifest), "--val-manifest", str(tiny_corpus["dev"])]
    args = [*common, "--train-shards", seven.url_pattern, "--output-dir", str(out), "--max-epochs", "1", *TINY_MODEL]
    with caplog.at_level("INFO", logger="asr"):
        assert main([*args, "data.max_batch_seconds=6", "features.normalize=global"]) == 0
    assert (out / "model.pt").is_file()
    assert "train from 7 shards: 1 readers (1 ranks x 1)" in caplog.text
    # NeMo's per-shard manifests as the training manifest, word pieces learned from their transcripts
    per_shard = str(seven.directory / "sharded_manifests" / "manifest_{0..6}.json")
    bpe = ["train", "--train-manifest", per_shard, *common[3:], "--train-shards", seven.url_pattern]
    bpe += ["--output-dir", str(tmp_path / "bpe"), "--max-epochs", "1", *TINY_MODEL, "data.max_batch_seconds=6"]
    assert main([*bpe, "tokenizer.type=bpe", "tokenizer.vocab_size=40"]) == 0
    # a plain manifest given as the shards' manifest: every line is named as lacking its shard_id
    bad = [*common[:2], str(tiny_corpus["train"]), *common[3:], "--train-shards", seven.url_pattern]
    assert main([*bad, "--output-dir", str(tmp_path / "bad"), "--max-epochs", "1", *TINY_MODEL]) == 2


def test_a_missing_local_shard_is_an_error_and_a_failing_pipe_is_named_and_skipped(seven):
    from asr.data.shard_stream import check_shards

    lines = read_shard_manifest(seven.manifest)
    urls = [str(seven.directory / f"audio_{i}.tar") for i in range(7)]
    with pytest.raises(ShardError, match=r"nowhere/audio_3.tar: shard 3 not found"):
        check_shards([*urls[:3], "/nowhere/audio_3.tar", *urls[4:]], lines)
    urls[3] = "pipe:exit 3"  # e.g. `aws s3 cp` failing: no bytes, a non-zero status
    ds = ShardStream(urls, lines, CharTokenizer(), 16000, max_batch_seconds=6.0)
    batches = list(DataLoader(ds, batch_size=None, collate_fn=shard_collate))
    assert len(batches) == len(ds)
    skipped = [str(s) for b in batches for s in b["skipped"]]
    assert len(skipped) == sum(1 for u in lines if u.extra["shard_id"] == 3) > 0
    assert all("pipe:exit 3:" in s and "not read" in s for s in skipped)


def test_shards_in_nemos_own_layout_load_here(tiny_corpus, tmp_path):
    """Shards as NeMo's convert_to_tarred_audio_dataset.py writes them: audio members only (no .json beside
    them), a tarred_audio_manifest.json whose audio_filepath is the member's name, with shard_id and its own keys."""
    original = read_manifest(tiny_corpus["train"])
    lines = []
    for shard_id in range(3):
        with tarfile.open(tmp_path / f"audio_{shard_id}.tar", "w") as tar:
            for u in original[shard_id::3]:
                name = Path(u.audio_filepath).name
                tar.add(u.audio_filepath, arcname=name)
                lines.append(
                    {"audio_filepath": name, "duration": u.duration, "text": u.text, "shard_id": shard_id, "lang": "en"}
                )
    (tmp_path / MANIFEST_NAME).write_text("".join(json.dumps(x) + "\n" for x in lines))
    utts = read_shard_manifest(tmp_path / MANIFEST_NAME)
    ds = ShardStream(str(tmp_path / "audio_{0..2}.tar"), utts, CharTokenizer(), 16000, max_batch_seconds=6.0)
    batches = list(DataLoader(ds, batch_size=None, collate_fn=shard_collate))
    assert sorted(i for b in batches for i in b["indices"]) == list(range(len(original)))
    assert not [s for b in batches for s in b["skipped"]]
    assert utts[0].extra["lang"] == "en"  # other keys ride along, as in any manifest


def test_global_feature_statistics_sample_a_few_shards(seven):
    from asr.data.shard_stream import sample_shard_audio

    lines = read_shard_manifest(seven.manifest)
    got = list(sample_shard_audio(seven.url_pattern, lines, 16000, max_utterances=5, per_shard=2, seed=0))
    assert len(got) == 5 and all(a.dtype == np.float32 and a.size > 0 for a in got)
    everything = list(sample_shard_audio(seven.url_pattern, lines, 16000, max_utterances=100, per_shard=100))
    assert len(everything) == len(lines)


def test_the_delivery_order_is_the_dataloaders_turns():
    from asr.data.shard_stream import delivery_order

    assert delivery_order([3, 1]) == [0, 1, 0, 0]
    assert delivery_order([2, 3, 1]) == [0, 1, 2, 0, 1, 1]
    ds_counts = [5, 2, 4]
    order = delivery_order(ds_counts)
    assert [order.count(k) for k in range(3)] == ds_counts


@pytest.mark.skipif(shutil.which("curl") is None, reason="webdataset reads http(s) URLs through curl")
def test_http_urls_read_the_same(seven):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(seven.directory))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/audio_{{0..6}}.tar"
        ds = ShardStream(url, read_shard_manifest(seven.manifest), CharTokenizer(), 16000, max_batch_seconds=6.0)
        batches = list(DataLoader(ds, batch_size=None, collate_fn=shard_collate))
        assert not [s for b in batches for s in b["skipped"]]
        assert [list(b["indices"]) for b in batches] == epoch_indices(stream(seven))
    finally:
        server.shutdown()


def test_nemos_per_shard_manifests_read_as_one(seven):
    pattern = str(seven.directory / "sharded_manifests" / "manifest_{0..6}.json")
    per_shard = read_shard_manifest(pattern)
    whole = read_shard_manifest(seven.manifest)
    assert sorted((u.audio_filepath, u.extra["shard_id"]) for u in per_shard) == sorted(
        (u.audio_filepath, u.extra["shard_id"]) for u in whole
    )
    with pytest.raises(ManifestError, match="manifest_7.json: shard manifest not found"):
        read_shard_manifest(str(seven.directory / "sharded_manifests" / "manifest_{0..7}.json"))


def test_resampling_draws_each_readers_share_anew_and_needs_no_shard_per_reader():
    rng = np.random.default_rng(1)
    durations = rng.uniform(1.0, 16.0, 300)
    shard_ids = np.sort(rng.integers(0, 5, 300))  # 5 shards for 2 ranks x 4 readers
    with pytest.raises(ShardError, match="data.shard_resample=true"):
        ShardPlanner(durations, shard_ids, 5, 4, 2, 60.0, buffer_size=32)
    planner = ShardPlanner(durations, shard_ids, 5, 4, 2, 60.0, buffer_size=32, resample=True)
    share = durations.sum() / 8
    for epoch in range(3):
        plans = [planner.rank_plan(epoch, k) for k in range(2)]
        assert {sum(len(p.batches) for p in rank) for rank in plans} == {len(planner)}
        for p in (p for rank in plans for p in rank):
            mine = [i for b in p.batches for i in b]
            assert len(mine) == len(set(mine))  # never twice within one reader
            assert durations[mine].sum() >= 0.999 * share  # at least its share of the epoch's audio
            assert {shard_ids[i] for i in mine} == set(p.shards)
    assert (
        planner.plan(1, 0).shards != planner.plan(2, 0).shards
        or planner.plan(1, 0).batches != planner.plan(2, 0).batches
    )
