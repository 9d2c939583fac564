"""The generator zoo: source tags and selection, disjoint parts of a source, the zoo protocols as shipped suites,
bad zoo folders, and the generalization view (numbers on synthetic scores; one small run on real images)."""

from __future__ import annotations

import csv
import json
import shutil
import textwrap

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score
from synthetic import logits, measured

from bench.audit import find_duplicates
from bench.compare import aggregate
from bench.generalization import generalization
from bench.importer import IMPORTERS, ImportContext
from bench.parts import part_sizes, split_parts
from bench.records import Bootstrap, Record, ScoresFile
from bench.runner import Runner
from bench.sources import SourceError, SourceStore, content_hash
from bench.suite import SourceSpec, Suite, SuiteError, load_suite

BASE = """
name: tagged
sources:
  real-train: {importer: folder, path: r, split: train, label: real}
  real-test: {importer: folder, path: q, label: real}
  sd-train: {importer: folder, path: s, split: train, label: fake, tags: {family: sd14, kind: diffusion, year: 2022}}
  old-gan: {importer: folder, path: a, label: fake, tags: {family: dcgan, kind: gan, year: 2016}}
  new-gan: {importer: folder, path: b, label: fake, tags: {family: sngan, kind: gan, year: 2018}}
  flow: {importer: folder, path: c, label: fake, tags: {family: realnvp, kind: flow, year: 2017}}
  control: {importer: folder, path: d, label: fake}
detectors: [{name: lenet}]
"""


def suite_of(tmp_path, text: str) -> Suite:
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(BASE) + textwrap.dedent(text))
    return load_suite(path)


def test_tag_selectors_pick_sources_and_partition_makes_parts(tmp_path):
    suite = suite_of(tmp_path, """
        partition: [{of: {tag: {year: {le: 2017}}}, parts: {train: 0.5, test: 0.5}, seed: 3}]
        train:
          - {name: mixed, real: [real-train], fake: [sd-train, {tag: {part: train, kind: [gan, flow]}}], limit: 20}
        test: {real: real-test, fake: [{tag: {part: test}}, {tag: {year: {gt: 2017}}}, control], limit: 20}
    """)
    assert suite.train[0].fake == ["sd-train", "old-gan.train", "flow.train"]  # names, in declaration order
    assert suite.test_fakes() == ["old-gan.test", "flow.test", "new-gan", "control"]
    part = suite.sources["old-gan.train"]
    assert (part.importer, part.source, part.part, part.seed, part.split, part.label) == (
        "part", "old-gan", "train", 3, "train", "fake")
    assert part.tags == {"family": "dcgan", "kind": "gan", "year": 2016, "part": "train"}
    assert "sd-train.train" not in suite.sources  # year 2022
    assert Suite.model_validate(suite.model_dump()) == suite  # a record's suite_config loads to the same suite
    kinds = suite_of(tmp_path, """
        train: [{name: no-gan, real: [real-train], fake: [{tag: {kind: {ne: gan}}}], limit: 20}]
        test: {real: real-test, fake: [{tag: {kind: gan}}], limit: 20}
    """)
    assert kinds.train[0].fake == ["sd-train"] and kinds.test_fakes() == ["old-gan", "new-gan"]


@pytest.mark.parametrize(("text", "expected"), [
    ("train: [{name: t, real: [real-train], fake: [{tag: {kind: vae}}]}]\ntest: {real: real-test, fake: ['*']}",
     r"train 't' fake: \{tag: \{kind: vae\}\} selects no declared fake source with split 'train' \(tags: family: "),
    ("train: [{name: t, real: [real-train], fake: [sd-train]}]\ntest: {real: real-test, fake: "
     "[{tag: {year: {lt: 2000}}}]}", r"test fake \{tag: \{year: \{lt: 2000\}\}\} matches no declared fake test"),
    ("train: [{name: t, real: [real-train], fake: [sd-train]}]\ntest: {real: real-test, fake: ['*', 'nothing*']}",
     r"test fake 'nothing\*' matches no declared fake test source"),
    ("partition: [{of: {tag: {kind: vae}}, parts: {train: 0.5}}]\ntrain: [{name: t, real: [real-train], fake: "
     "[sd-train]}]\ntest: {real: real-test, fake: ['*']}", r"partition.0.of: \{tag: \{kind: vae\}\} selects no"),
    ("partition: [{of: flow, parts: {train: 0.7, test: 0.5}}]\ntrain: [{name: t, real: [real-train], fake: "
     "[sd-train]}]\ntest: {real: real-test, fake: ['*']}", r"partition.0: .*the shares add up to 1.2"),
    ("sources: {flow.train: {importer: folder, path: z, split: train, label: fake}}\npartition: [{of: flow, parts: "
     "{train: 0.5, test: 0.5}}]\ntrain: [{name: t, real: [real-train], fake: [sd-train]}]\ntest: {real: real-test, "
     "fake: ['*']}", r"source 'flow.train' is declared and also made by partition.0"),
    ("train: [{name: t, real: [real-train], fake: [{tag: {}}]}]\ntest: {real: real-test, fake: ['*']}",
     r"is neither a source name, a pattern nor a tag selector"),
])
def test_selectors_that_select_nothing_are_load_time_errors(tmp_path, text, expected):
    if text.startswith("sources:"):  # merged into BASE's sources
        extra, text = text.split("\n", 1)
        base = BASE.replace("detectors:", "  " + extra.removeprefix("sources: {").removesuffix("}") + "\ndetectors:")
        (tmp_path / "suite.yaml").write_text(textwrap.dedent(base) + text)
    else:
        (tmp_path / "suite.yaml").write_text(textwrap.dedent(BASE) + text)
    with pytest.raises(SuiteError, match=expected):
        load_suite(tmp_path / "suite.yaml")


def test_a_part_split_is_disjoint_deterministic_and_keeps_copies_together():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 3, 8, 8), dtype=np.uint8)
    images[[5, 17, 33]] = images[2]  # one image four times
    parts = split_parts(images, {"train": 0.5, "test": 0.5}, seed=1)
    assert sorted(np.concatenate(list(parts.values()))) == list(range(40))  # every image, in exactly one part
    together = [name for name, found in parts.items() if 2 in found]
    assert all(i in parts[together[0]] for i in (5, 17, 33))
    assert {len(set(map(bytes, images[found]))) for found in parts.values()} == {part_sizes(37, {"a": 0.5})["a"] + 1,
                                                                                part_sizes(37, {"a": 0.5})["a"]}
    again = split_parts(images, {"test": 0.5, "train": 0.5}, seed=1)  # the order of the parts does not matter
    assert all(np.array_equal(parts[p], again[p]) for p in parts)
    other = split_parts(images, {"train": 0.5, "test": 0.5}, seed=2)
    assert not np.array_equal(parts["train"], other["train"])
    assert part_sizes(10, {"train": 0.3, "test": 0.3}) == {"test": 3, "train": 3}  # shares below 1 leave images out
    assert part_sizes(5, {"train": 0.5, "test": 0.5}) == {"test": 3, "train": 2}


def test_the_part_importer_records_every_part_size(tmp_path, data_root):
    store = SourceStore(tmp_path / "cache")
    context = ImportContext(store, data_root, tmp_path / "cache")
    base = SourceSpec(importer="folder", label="fake", path="cifar10-zoo/wgan-gp")
    IMPORTERS.get("folder").load("zoo-wgan-gp", base, context)
    made = {}
    for part in ("train", "test"):
        spec = SourceSpec(importer="part", label="fake", split=part, source="zoo-wgan-gp", part=part, seed=0,
                          parts={"train": 0.5, "test": 0.5})
        made[part] = IMPORTERS.get("part").load(f"zoo-wgan-gp.{part}", spec, context)
        assert IMPORTERS.get("part").count(spec, context) == made[part].count
    halves = {"share": 0.5, "count": 114}
    assert made["train"].origin["parts"] == made["test"].origin["parts"] == {"train": halves, "test": halves}
    assert made["train"].origin["source"]["count"] == 228 and made["train"].origin["seed"] == 0
    overlap, _ = find_duplicates(store.load("zoo-wgan-gp.test"), store.load("zoo-wgan-gp.train"))
    assert overlap.exact == 0
    files = [set(store.load(f"zoo-wgan-gp.{p}").files) for p in ("train", "test")]
    assert not files[0] & files[1] and len(files[0] | files[1]) == 228
    with pytest.raises(ValueError, match="part 'val' is not one of the parts"):
        SourceSpec(importer="part", label="fake", source="x", part="val", parts={"train": 0.5, "test": 0.5})


@pytest.mark.parametrize(("make", "expected"), [
    (lambda folder, good: None, r"contains no image files"),
    (lambda folder, good: Image.new("RGB", (64, 64)).save(folder / "big.png"),
     r"big.png: size 64x64, expected 32x32 like most images beside it\. Resize"),
    (lambda folder, good: (folder / "cut.png").write_bytes(good.read_bytes()[:60]), r"cut.png: not a readable image"),
])
def test_a_bad_zoo_folder_gets_the_one_line_errors(tmp_path, data_root, make, expected):
    folder = tmp_path / "root" / "cifar10-zoo" / "newfamily"
    folder.mkdir(parents=True)
    good = sorted((data_root / "cifar10-zoo" / "wgan").iterdir())
    if "no image" not in expected:
        for path in good[:3]:
            shutil.copy(path, folder / path.name)
    make(folder, good[0])
    spec = SourceSpec(importer="folder", label="fake", path="cifar10-zoo/newfamily",
                      tags={"family": "newfamily", "kind": "gan", "year": 2016})
    context = ImportContext(SourceStore(tmp_path / "cache"), tmp_path / "root", tmp_path / "cache")
    with pytest.raises(SourceError, match=rf"^source zoo-newfamily \(folder .*newfamily\): .*{expected}") as error:
        IMPORTERS.get("folder").load("zoo-newfamily", spec, context)
    assert "\n" not in str(error.value)


# ---- the shipped protocols ------------------------------------------------------------------------------------


def test_the_zoo_sources_follow_families_csv(data_root):
    zoo = load_suite("zoo-cpu").sources
    with open(data_root / "cifar10-zoo" / "families.csv") as handle:
        families = list(csv.DictReader(handle))
    declared = {name: spec for name, spec in zoo.items() if name.startswith("zoo-")}
    assert len(declared) == len(families) == 17
    for row in families:
        spec = declared[f"zoo-{row['folder']}"]
        assert spec.path == f"cifar10-zoo/{row['folder']}" and (spec.label, spec.split) == ("fake", "test")
        assert spec.tags == {"family": row["family"], "kind": row["kind"], "year": int(row["year"])}


def test_the_protocols_see_what_they_say():
    zoo = load_suite("zoo-cpu")
    assert zoo.train[0].fake == ["cifake-sd14-train"]
    assert set(zoo.test_fakes()) == {"cifake-sd14-test", "cifake-sd14-test-blur1"} | {
        n for n in zoo.sources if n.startswith("zoo-")}
    temporal = load_suite("zoo-temporal-cpu")
    years = {name: spec.tags.get("year") for name, spec in temporal.sources.items()}
    trained = temporal.train[0].fake
    assert trained[0] == "cifake-sd14-train"
    assert {n.removesuffix(".train") for n in trained[1:]} == {n for n in years if n.startswith("zoo-") and "." not in n
                                                              and years[n] <= 2017}
    tested = temporal.test_fakes()
    assert {n for n in tested if n.endswith(".test")} == {n.replace(".train", ".test") for n in trained[1:]}
    assert {n for n in tested if "." not in n} == {"cifake-sd14-test"} | {
        n for n in years if n.startswith("zoo-") and "." not in n and years[n] > 2017}
    out = load_suite("zoo-leave-one-kind-out-cpu")
    kinds = {spec.tags.get("kind") for name, spec in out.sources.items() if name.startswith("zoo-")}
    assert [t.name for t in out.train] == [f"without-{k}" for k in ("gan", "diffusion", "autoregressive", "flow",
                                                                    "vae")]
    for train in out.train:
        held_out = train.name.removeprefix("without-")
        assert {out.sources[n].tags["kind"] for n in train.fake} == kinds - {held_out}
        assert all(n.endswith(".train") for n in train.fake)
    assert len(out.test_fakes()) == 17 and all(n.endswith(".test") for n in out.test_fakes())
    for name in ("zoo", "zoo-temporal", "zoo-leave-one-kind-out"):  # the full-scale twins: same data, all of it
        full, cpu = load_suite(name), load_suite(f"{name}-cpu")
        assert [t.fake for t in full.train] == [t.fake for t in cpu.train]
        assert full.test_fakes() == cpu.test_fakes() and full.test.limit is None
        assert full.encoding == cpu.encoding and full.encoding.describe() == "JPEG q75 4:2:0"


def test_a_new_family_is_one_entry(tmp_path):
    (tmp_path / "suite.yaml").write_text(textwrap.dedent("""
        include: [zoo-temporal-cpu]
        name: with-a-new-family
        sources:
          zoo-new: {importer: folder, path: cifar10-zoo/new, label: fake, split: test,
                    tags: {family: new, kind: gan, year: 2016}}
    """))
    suite = load_suite(tmp_path / "suite.yaml")
    assert "zoo-new.train" in suite.train[0].fake and "zoo-new.test" in suite.test_fakes()


# ---- the generalization view ----------------------------------------------------------------------------------

FAMILIES = {"seen-a": ("gan", 2016, 300, 2.0), "open-b": ("gan", 2017, 40, 1.0), "open-c": ("flow", 2018, 400, 0.2),
            "open-d": ("flow", 2019, 120, 0.6)}  # family -> kind, year, fakes, separation


TEMPLATE = measured("base", 0, logits("base", 0))  # a valid record, its fields replaced below


def synthetic_records(root, detectors=(("good", 1.0), ("weak", 0.3)), seeds=(0, 1, 2)) -> list[Record]:
    """Records with score files: reals N(0, 1), each family's fakes N(separation * strength, 1); 'seen-a' is in
    training."""
    sources = {name: {"tags": {"family": name, "kind": kind, "year": year}} for name, (kind, year, *_) in
               FAMILIES.items()}
    config = {"sources": {"train-fakes": {"tags": {"family": "seen-a"}}, "reals": {}, **sources},
              "train": [{"name": "set", "real": ["reals"], "fake": ["train-fakes"]}]}
    (root / "scores").mkdir(exist_ok=True)
    records = []
    for detector, strength in detectors:
        for seed in seeds:
            rng = np.random.default_rng(seed)
            reals = rng.normal(0, 1, 500)  # the same images for every family: one draw per seed
            for family, (_, _, n_fake, separation) in FAMILIES.items():
                fakes = np.random.default_rng([seed, n_fake]).normal(separation * strength + 0.1 * seed, 1, n_fake)
                scores = np.r_[reals, fakes].astype(np.float32)
                key = f"{detector}-{family}-{seed}"
                np.save(root / "scores" / f"{key}.npy", scores)
                test = TEMPLATE.test.model_copy(update={
                    "name": family, "real": TEMPLATE.test.real.model_copy(update={"sha256": "reals"}),
                    "fake": TEMPLATE.test.fake.model_copy(update={"sha256": family, "count": n_fake})})
                records.append(TEMPLATE.model_copy(update={
                    "key": key, "suite": "synthetic", "suite_config": config, "detector": detector, "seed": seed,
                    "train": TEMPLATE.train.model_copy(update={"name": "set"}), "test": test, "metrics": {},
                    "n_real": 500, "n_fake": n_fake, "threshold": 0.5,
                    "bootstrap": Bootstrap(resamples=200, level=0.95, seed=0),
                    "scores": ScoresFile(file=f"scores/{key}.npy", order="real then fake", sha256=content_hash(scores)),
                }))
    return records


def test_generalization_numbers_on_synthetic_scores(tmp_path):
    records = synthetic_records(tmp_path)
    view = generalization(aggregate(records, tmp_path))
    auc = {(r.detector, r.test.name, r.seed): roc_auc_score(
        np.r_[np.zeros(500), np.ones(r.n_fake)], np.load(tmp_path / r.scores.file)) for r in records}
    family_auc = {(d, f): np.mean([auc[d, f, s] for s in (0, 1, 2)]) for d, f, _ in auc}
    unseen = ["open-c", "open-d", "open-b"]  # by kind, then year
    for _, row in view.summary.iterrows():
        d = row["detector"]
        assert row["seen_families"] == "seen-a" and row["unseen_families"].split() == unseen
        assert row["seen"] == pytest.approx(family_auc[d, "seen-a"])
        macro = np.mean([family_auc[d, f] for f in unseen])  # each family weighted equally, not by its images
        assert row["unseen"] == pytest.approx(macro)
        scores = {(f, s): np.load(tmp_path / f"scores/{d}-{f}-{s}.npy") for f in unseen for s in (0, 1, 2)}
        labels = np.r_[np.zeros(500), np.ones(sum(FAMILIES[f][2] for f in unseen))]
        pooled = np.mean([roc_auc_score(labels, np.r_[scores["open-b", s][:500], *[scores[f, s][500:] for f in unseen]])
                          for s in (0, 1, 2)])
        assert abs(pooled - macro) > 0.005  # the macro mean is not the AUC of the pooled images
        assert row["worst_family"] == min(unseen, key=lambda f: family_auc[d, f]) == "open-c"
        assert row["gap"] == pytest.approx(family_auc[d, "seen-a"] - macro)
        assert row["kind=flow"] == pytest.approx(np.mean([family_auc[d, f] for f in ("open-c", "open-d")]))
        assert row["kind=flow_n"] == 2 and row["kind=gan_n"] == 1
        for name in ("seen", "unseen", "gap", "worst"):
            assert row[f"{name}_ci_low"] < row[name] < row[f"{name}_ci_high"]
    (pair,) = view.comparisons.to_dict("records")
    assert (pair["a"], pair["b"]) == ("good", "weak") and pair["difference_ci_low"] > 0
    assert pair["verdict"] == "good better"
    markdown = "\n".join(view.markdown())
    assert "## Generalization to unseen generators" in markdown and "| open-c " in markdown
    assert "![Generalization heatmap, trained on set](figures/generalization-set.png)" in markdown
    assert view.figures()["figures/generalization-set.png"].startswith(b"\x89PNG")


def test_no_view_without_unseen_tagged_families(tmp_path):
    records = synthetic_records(tmp_path, detectors=(("good", 1.0),), seeds=(0,))
    records = [r.model_copy(update={"suite_config": {"sources": {}, "train": []}})  # a suite without tags
               for r in records]
    assert generalization(aggregate(records, tmp_path)) is None


SMALL = """
name: zoo-small
sources:
  reals: {importer: folder, path: ddpm-cifar10/REAL, label: real}
  zoo-dcgan: {importer: folder, path: cifar10-zoo/dcgan, label: fake, tags: {family: dcgan, kind: gan, year: 2016}}
  zoo-lvae: {importer: folder, path: cifar10-zoo/lvae, label: fake, tags: {family: lvae, kind: vae, year: 2016}}
  zoo-wgan: {importer: folder, path: cifar10-zoo/wgan, label: fake, tags: {family: wgan, kind: gan, year: 2017}}
  zoo-ddpm-cfg: {importer: folder, path: cifar10-zoo/ddpm-cfg, label: fake,
                 tags: {family: ddpm-cfg, kind: diffusion, year: 2022}}
partition:
  - {of: reals, parts: {train: 0.5, test: 0.5}}
  - {of: {tag: {year: {le: 2016}}}, parts: {train: 0.5, test: 0.5}}
seeds: [0, 1]
train: [{name: to-2016, real: [reals.train], fake: [{tag: {part: train}}], limit: 60}]
test: {real: reals.test, fake: [{tag: {part: test}}, {tag: {year: {gt: 2016}}}]}
detectors: [{name: lenet}]
recipe: {epochs: 1}
encoding: {format: jpeg, quality: 75}
bootstrap: 50
"""


def test_a_small_zoo_protocol_runs_end_to_end(tmp_path, data_root):
    (tmp_path / "suite.yaml").write_text(textwrap.dedent(SMALL))
    suite = load_suite(tmp_path / "suite.yaml")
    summary = Runner(tmp_path / "cache", tmp_path / "results", data_root, device="cpu", progress=False).run(suite)
    by_source = {r.test.name: r for r in summary.records if r.seed == 0}
    assert set(by_source) == {"zoo-dcgan.test", "zoo-lvae.test", "zoo-wgan", "zoo-ddpm-cfg"}
    drawn = by_source["zoo-dcgan.test"].test.fake.sources[0].model_extra
    assert drawn["part_of"]["parts"] == {"train": {"share": 0.5, "count": 82}, "test": {"share": 0.5, "count": 82}}
    assert drawn["part_of"]["source"]["name"] == "zoo-dcgan" and drawn["part_of"]["part"] == "test"
    trained = {s.name: s.model_extra for s in by_source["zoo-wgan"].train.fake.sources}
    assert trained["zoo-lvae.train"]["part_of"]["parts"]["train"]["count"] == 72
    assert all((r.test_images_in_training.real, r.test_images_in_training.fake) == (0, 0) for r in summary.records)
    markdown = summary.leaderboard["markdown"].read_text()
    section = markdown.split("## Generalization to unseen generators")[1].split("\n## ")[0]
    assert "Seen families: dcgan, lvae." in section and "| lenet " in section
    assert (tmp_path / "results" / "figures" / "generalization-to-2016.png").is_file()
    rows = json.loads((tmp_path / "results" / "leaderboard-generalization.json").read_text())
    assert rows[0]["unseen_families"] == "ddpm-cfg wgan"  # by kind, then year
    assert "Generalization to unseen generators" in summary.leaderboard["html"].read_text()
