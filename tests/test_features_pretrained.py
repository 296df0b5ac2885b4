"""`text4vis features` without a checkpoint embeds with the config's pretrained CLIP weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import COLOURS, overrides, write_colour_clips
from text4vis.cli import main
from text4vis.config import dump_config, load_config
from text4vis.data.annotations import write_annotations
from text4vis.data.dataset import build_dataset
from text4vis.data.labels import write_labels
from text4vis.data.transforms import normalize_video
from text4vis.models.backbones import create_clip


def test_features_without_checkpoint_use_the_pretrained_encoder(tmp_path, capsys):
    write_labels(tmp_path / "labels.csv", [f"{name} thing" for name in COLOURS])
    write_annotations(tmp_path / "train.txt", write_colour_clips(tmp_path, per_class=1, seed=0))
    write_annotations(tmp_path / "val.txt", write_colour_clips(tmp_path, per_class=1, seed=1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)  # weights unlike the ones build_model's own seed would draw
        clip = create_clip("tiny-vit").eval()
    weight_file = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), weight_file)
    cfg = load_config(
        None, overrides(tmp_path, tmp_path / "runs", f"model.pretrained={weight_file}")
    )
    config_path = tmp_path / "c.yaml"
    dump_config(cfg, config_path)
    out = tmp_path / "f.safetensors"
    args = ["features", str(config_path), "--split", "train", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    features = load_file(str(out))["features"]
    assert features.shape == (len(COLOURS), clip.visual.output_dim)

    # Restated: mean over frames of CLIP's image embeddings of the evaluation clip, L2-normalised.
    dataset_train = build_dataset(
        load_config(config_path, [f"data.test_list={tmp_path / 'train.txt'}"]), "test"
    )
    assert len(dataset_train) == len(COLOURS)
    with torch.no_grad():
        for i in range(len(dataset_train)):
            video = normalize_video(dataset_train[i]["video"][0])  # [T, 3, S, S] uint8 -> float
            expected = F.normalize(clip.encode_image(video).mean(0), dim=-1)
            torch.testing.assert_close(features[i], expected, atol=1e-5, rtol=1e-4)
