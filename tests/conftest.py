import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A few seconds of espeak-ng speech in train/dev/test manifests (built once per test session)."""
    pytest.importorskip("espeakng_loader")
    from asr.corpora.synthetic import build_corpus

    out = tmp_path_factory.mktemp("tiny_corpus")
    return build_corpus(out, n_train=16, n_dev=4, n_test=4, seed=0, noise_prob=0.0)


TINY_MODEL = [
    "model.hidden_size=24",
    "model.num_layers=1",
    "model.conv_channels=4",
    "model.subsampling=2",
    "data.num_workers=0",
    "trainer.progress_bar=false",
    "optim.warmup_steps=2",
    "trainer.log_every_n_steps=1",
]


@pytest.fixture(scope="session")
def trained_model(tiny_corpus, tmp_path_factory):
    """A tiny model trained for one epoch through the CLI (it recognises nothing; it exercises everything)."""
    from asr.cli import main

    out = tmp_path_factory.mktemp("exp")
    rc = main(
        [
            "train",
            "--train-manifest",
            str(tiny_corpus["train"]),
            "--val-manifest",
            str(tiny_corpus["dev"]),
            "--output-dir",
            str(out),
            "--max-epochs",
            "1",
            *TINY_MODEL,
            # Every training-time augmentation that needs no noise files, so the CLI run goes through them.
            "augment.speed_perturb=true",
            "augment.vtlp=true",
        ]
    )
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tiny-model steps: on a shared machine, two spin-waiting threads made them
    up to 100x slower. Use as ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
