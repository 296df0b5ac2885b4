"""Classifier initialisers, LDA against scikit-learn, artifacts, CLI commands."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from text4vis.cli import main
from text4vis.models.classifier import (
    ClassifierArtifact,
    ClassifierError,
    build_classifier,
    lda_coefficients,
    lda_fit,
    load_classifier,
    orthogonal_weight,
    random_weight,
    save_classifier,
)


def test_orthogonal_rows_are_orthonormal_and_c_gt_d_fails():
    w = orthogonal_weight(10, 16, seed=3)
    torch.testing.assert_close(w @ w.T, torch.eye(10), atol=1e-5, rtol=0)
    assert not torch.equal(w, orthogonal_weight(10, 16, seed=4))
    with pytest.raises(ClassifierError, match="C <= D"):
        orthogonal_weight(17, 16)
    with pytest.raises(ClassifierError, match="17 classes"):
        build_classifier("orthogonal", class_names=[str(i) for i in range(17)], embed_dim=16)


def test_random_is_seeded_gaussian_and_artifacts_are_normalised():
    assert torch.equal(random_weight(5, 8, 1), random_weight(5, 8, 1))
    big = random_weight(200, 64, 0)
    assert abs(float(big.mean())) < 0.02 and abs(float(big.std()) - 1.0) < 0.02
    art = build_classifier("random", class_names=list("abcde"), embed_dim=8, seed=1)
    torch.testing.assert_close(art.weight, F.normalize(random_weight(5, 8, 1), dim=-1))
    with pytest.raises(ClassifierError, match="choose one of"):
        build_classifier("bert", class_names=["a"], embed_dim=8)


def synthetic_problem(seed: int, n: int, c: int = 6, d: int = 12):
    generator = torch.Generator().manual_seed(seed)
    means = torch.randn(c, d, generator=torch.Generator().manual_seed(100)) * 1.2
    mix = torch.randn(d, d, generator=torch.Generator().manual_seed(101)) / d**0.5
    labels = torch.randint(c, (n,), generator=generator)
    x = means[labels] + torch.randn(n, d, generator=generator) @ (mix + torch.eye(d))
    return x, labels


def test_lda_agrees_with_sklearn_on_held_out_data():
    sklearn = pytest.importorskip("sklearn.discriminant_analysis")
    x_train, y_train = synthetic_problem(0, 1200)
    x_test, y_test = synthetic_problem(1, 2000)
    coef, intercept = lda_fit(x_train, y_train, 6)
    ours = (x_test @ coef.T + intercept).argmax(dim=1)
    reference = sklearn.LinearDiscriminantAnalysis().fit(x_train.numpy(), y_train.numpy())
    theirs = torch.from_numpy(reference.predict(x_test.numpy()))
    agreement = float((ours == theirs).float().mean())
    assert agreement >= 0.99, agreement
    assert 0.3 < float((ours == y_test).float().mean()) < 1.0  # a real, non-trivial problem
    assert torch.equal(lda_coefficients(x_train, y_train, 6), coef)
    with pytest.raises(ClassifierError, match="no feature vectors"):
        lda_fit(x_train[y_train < 5], y_train[y_train < 5], 6)


def test_artifact_roundtrip_hash_and_checks(tmp_path):
    art = build_classifier("random", class_names=["run", "jump", "swim"], embed_dim=8, seed=2)
    path = save_classifier(art, tmp_path / "w.safetensors")
    loaded = load_classifier(path)
    assert torch.equal(loaded.weight, art.weight)
    assert loaded.class_names == ["run", "jump", "swim"]
    assert loaded.metadata["initializer"] == "random" and len(loaded.metadata["sha256"]) == 64
    loaded.check(["run", "jump", "swim"], 8)
    with pytest.raises(ClassifierError, match="row 1"):
        loaded.check(["run", "walk", "swim"])
    with pytest.raises(ClassifierError, match="width 8"):
        loaded.check(embed_dim=16)
    # A tampered weight is detected through the recorded hash.
    from safetensors.torch import save_file

    meta = {"sha256": loaded.metadata["sha256"], "class_names": '["run", "jump", "swim"]'}
    save_file({"weight": art.weight * 2}, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(ClassifierError, match="sha256"):
        load_classifier(tmp_path / "bad.safetensors")
    file_art = build_classifier("file", class_names=["run", "jump", "swim"], embed_dim=8, path=path)
    assert torch.equal(file_art.weight, art.weight)


def test_frozen_classifier_normalises_a_copy():
    from text4vis.models.classifier import FrozenClassifier

    w = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    original = w.clone()
    head = FrozenClassifier(w)
    assert torch.equal(w, original)  # caller's tensor untouched
    torch.testing.assert_close(head().norm(dim=-1), torch.ones(3))


def write_labels(path, names):
    path.write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
    return path


def test_classifier_and_plot_commands(tmp_path, capsys):
    labels = write_labels(tmp_path / "labels.csv", ["run", "jump", "swim", "walk"])
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  labels: {labels}\nmodel:\n  arch: tiny-vit\n")
    out = tmp_path / "ortho.safetensors"
    assert main(["classifier", str(config), "--init", "orthogonal", "--out", str(out)]) == 0
    art = load_classifier(out)
    assert art.weight.shape == (4, 64) and art.class_names == ["run", "jump", "swim", "walk"]
    torch.testing.assert_close(art.weight @ art.weight.T, torch.eye(4), atol=1e-5, rtol=0)

    from safetensors.torch import save_file

    x, y = synthetic_problem(0, 400, c=4, d=64)
    save_file({"features": x, "labels": y}, str(tmp_path / "feats.safetensors"))
    lda_out = tmp_path / "lda.safetensors"
    argv = ["classifier", str(config), "--init", "lda", "--out", str(lda_out)]
    assert main([*argv, "--features", str(tmp_path / "feats.safetensors")]) == 0
    torch.testing.assert_close(
        load_classifier(lda_out).weight, F.normalize(lda_coefficients(x, y, 4), dim=-1)
    )
    assert main(argv) == 2  # no --features: a one-line error
    assert "--features" in capsys.readouterr().err

    text_out = tmp_path / "text.safetensors"
    text_argv = ["classifier", str(config), "--init", "text", "--out", str(text_out)]
    assert main([*text_argv, "--set", "model.prompt=templates"]) == 0
    text_art = load_classifier(text_out)
    assert text_art.metadata["prompt"] == "templates" and len(text_art.metadata["templates"]) > 1
    assert text_art.metadata["encoder"] == "clip:tiny-vit/random"

    png = tmp_path / "sim.png"
    assert main(["plot-classifier", str(out), "--classes", "run", "swim", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot-classifier", str(out), "--classes", "fly", "--out", str(png)]) == 2


def test_class_similarity_is_cosine():
    from text4vis.models.plots import class_similarity

    art = ClassifierArtifact(weight=torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]))
    sim = class_similarity(art.weight)
    torch.testing.assert_close(sim[0, 1], torch.tensor(2**-0.5))
    torch.testing.assert_close(sim[0, 2], torch.tensor(0.0))


def test_template_bank_samples_per_step_and_evaluates_with_single_template():
    from text4vis.models.classifier import TemplateBankClassifier

    generator = torch.Generator().manual_seed(0)
    bank = F.normalize(torch.randn(5, 3, 8, generator=generator), dim=-1)
    eval_weight = F.normalize(torch.randn(3, 8, generator=generator), dim=-1)

    def index(w):
        return int((bank - w).flatten(1).norm(dim=1).argmin())

    head = TemplateBankClassifier(bank, eval_weight, seed=4).train()
    drawn = [head() for _ in range(20)]
    assert all(torch.allclose(w, bank[index(w)]) for w in drawn)
    indices = [index(w) for w in drawn]
    assert len(set(indices)) > 1  # different templates across steps
    again = TemplateBankClassifier(bank, eval_weight, seed=4).train()
    assert [index(again()) for _ in range(20)] == indices  # seeded: reproducible
    torch.testing.assert_close(head.eval()(), eval_weight)


def _bank_and_eval(k=6, c=3, d=8):
    generator = torch.Generator().manual_seed(1)
    bank = F.normalize(torch.randn(k, c, d, generator=generator), dim=-1)
    return bank, F.normalize(torch.randn(c, d, generator=generator), dim=-1)


def _drawn_indices(head, bank, count):
    return [int((bank - head()).flatten(1).norm(dim=1).argmin()) for _ in range(count)]


def test_template_bank_counter_round_trips_through_state_dict():
    import io

    from torch import nn

    from text4vis.models.classifier import TemplateBankClassifier

    bank, eval_weight = _bank_and_eval()
    # Nested under a parent, as in the video model (keys prefixed "classifier.").
    run = nn.ModuleDict({"classifier": TemplateBankClassifier(bank, eval_weight, seed=7)}).train()
    _drawn_indices(run["classifier"], bank, 9)  # N = 9 steps before the "checkpoint"
    state = run.state_dict()
    assert int(state["classifier.step"]) == 9 and state["classifier.step"].dtype == torch.int64
    buffer = io.BytesIO()
    torch.save(state, buffer)  # as the trainer's checkpoint, read back weights-only
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)

    resumed = nn.ModuleDict({"classifier": TemplateBankClassifier(bank, eval_weight, seed=7)})
    resumed.load_state_dict(loaded, strict=True)
    resumed.train()
    assert resumed["classifier"].draws == 9
    expected = _drawn_indices(run["classifier"], bank, 12)  # the uninterrupted run's next K
    assert _drawn_indices(resumed["classifier"], bank, 12) == expected
    fresh = TemplateBankClassifier(bank, eval_weight, seed=7).train()
    assert _drawn_indices(fresh, bank, 21)[9:] == expected  # and it is the 10th..21st draw
    assert len(set(expected)) > 1
    # Evaluation passes do not advance the counter.
    run.eval()
    run["classifier"]()
    assert int(run.state_dict()["classifier.step"]) == 21


def test_template_bank_state_dicts_carry_the_counter():
    from text4vis.models.classifier import TemplateBankClassifier

    bank, eval_weight = _bank_and_eval()
    old = TemplateBankClassifier(bank, eval_weight, seed=2).state_dict()
    del old["step"]  # a state dict of the unreleased version whose counter was an attribute
    head = TemplateBankClassifier(bank, eval_weight, seed=2)
    with pytest.raises(RuntimeError, match="step"):
        head.load_state_dict(old, strict=True)  # no compatibility path: refused like any other
    assert "older text4vis" not in str(old.keys())
    assert head.draws == 0
    # The counter round-trips: a loaded bank continues from the saved draw.
    head.train()
    head()
    restored = TemplateBankClassifier(bank, eval_weight, seed=2)
    restored.load_state_dict(head.state_dict(), strict=True)
    assert restored.draws == head.draws == 1
    # A current state dict that lacks the counter is incomplete: strict loading says so.
    current = TemplateBankClassifier(bank, eval_weight, seed=2).state_dict()
    del current["step"]
    with pytest.raises(RuntimeError, match="step"):
        TemplateBankClassifier(bank, eval_weight, seed=2).load_state_dict(current, strict=True)


def test_registry_names_config_values_and_initialisers():
    from text4vis.config import Config, ModelConfig
    from text4vis.engine.config_checks import config_problems
    from text4vis.models.classifier import (
        CLASSIFIERS,
        CONFIG_CLASSIFIERS,
        INITIALIZERS,
        STORAGES,
        classifier_name,
    )

    assert set(CLASSIFIERS) == {
        "text", "templates", "coop", "lda", "random", "orthogonal", "file", "learnable"
    }  # fmt: skip
    assert all(spec.storage in STORAGES for spec in CLASSIFIERS.values())
    assert set(INITIALIZERS) == {"text", "lda", "random", "orthogonal", "file"}
    assert classifier_name(ModelConfig(prompt="coop")) == "coop"
    assert classifier_name(ModelConfig(prompt="templates", template_mode="sample")) == "templates"
    with pytest.raises(ClassifierError, match=r"unknown classifier 'fisher'.*'learnable'"):
        classifier_name(ModelConfig(classifier="fisher"))
    cfg = Config(model=ModelConfig(classifier="fisher"))
    problems = config_problems(cfg, check_arch=False)
    assert any("model.classifier='fisher'" in p and "orthogonal" in p for p in problems)
    assert not any("model.classifier" in p for p in config_problems(Config(), check_arch=False))
    assert set(CONFIG_CLASSIFIERS) == set(CLASSIFIERS) - {"templates", "coop"}


def test_zero_shot_prompt_policy():
    from text4vis.config import ModelConfig
    from text4vis.models.zero_shot import ZeroShotError, zero_shot_templates

    with pytest.raises(ZeroShotError, match="CoOp"):
        zero_shot_templates(ModelConfig(prompt="coop"))
    assert zero_shot_templates(ModelConfig(prompt="coop"), "a clip of {}.") == ["a clip of {}."]
    sampled = ModelConfig(prompt="templates", template_mode="sample", template="a video of {}.")
    assert zero_shot_templates(sampled) == ["a video of {}."]
    assert zero_shot_templates(ModelConfig(prompt="classname")) == ["{}"]
