"""Source spectra: a known upsampling trace, radial profiles, the `bench show --spectrum` figure and source cards."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from bench.cli import main
from bench.spectrum import card_path, mean_log_spectrum, radial_profile, source_card_files

PNG = b"\x89PNG\r\n\x1a\n"


def test_radial_profile_rings_reach_nyquist():
    frequencies, profile = radial_profile(np.ones((32, 32)))
    assert len(frequencies) == 17 and frequencies[0] == 0 and frequencies[-1] == 0.5
    assert np.allclose(profile, 1)
    _, ramp = radial_profile(np.hypot(*np.indices((32, 32)) - 16))  # the distance to the centre itself
    assert np.allclose(ramp, np.arange(17), atol=0.3)


def test_nearest_neighbour_upsampling_shows_in_the_high_frequencies(cifake):
    """Nearest-neighbour 2x upsampling multiplies the spectrum by |cos(pi f)|: energy vanishes towards Nyquist."""
    real = cifake.load("cifake-real-test").images[:1000]
    upsampled = real.repeat(2, axis=2).repeat(2, axis=3)[:, :, :32, :32]
    frequencies, original = radial_profile(mean_log_spectrum(real))
    _, traced = radial_profile(mean_log_spectrum(upsampled))
    top = frequencies >= 0.375
    assert traced[top].mean() < original[top].mean() - 0.5
    assert traced[-1] < original[-1] - 2  # the ring at Nyquist, where |cos(pi f)| is 0 on the axes
    assert abs(traced[0] - original[0]) < 0.1  # the mean brightness is the same


def test_show_spectrum_writes_one_figure_and_grids_stay_the_default(cifake_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    names = ["cifake-real-test", "cifake-sd14-test"]
    result = runner.invoke(main, ["show", *names, "--spectrum", "--data-dir", str(cifake_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("wrote spectrum-cifake-real-test_cifake-sd14-test.png: mean spectra of "
                                    "cifake-real-test (10,000 images)")
    assert (tmp_path / "spectrum-cifake-real-test_cifake-sd14-test.png").read_bytes().startswith(PNG)
    grids = runner.invoke(main, ["show", *names, "--count", "4", "--data-dir", str(cifake_dir)])
    assert grids.output.splitlines() == [f"wrote {n}.png: 4 images of {n}" for n in names]
    assert all((tmp_path / f"{n}.png").read_bytes().startswith(PNG) for n in names)
    refused = runner.invoke(main, ["show", *names, "--out", "x.png", "--data-dir", str(cifake_dir)])
    assert refused.exit_code == 2 and "--out names one file" in refused.output


def test_source_cards_for_a_leaderboard(cifake):
    sources = {"cifake-real-test": cifake.load("cifake-real-test").images[:300],
               "cifake-sd14-test": cifake.load("cifake-sd14-test").images[:300]}
    files = source_card_files(sources, reference="cifake-real-test")
    assert sorted(files) == ["figures/source-cifake-real-test.png", "figures/source-cifake-sd14-test.png"]
    assert sorted(files) == sorted(card_path(name) for name in sources)  # where the leaderboards look for them
    assert all(png.startswith(PNG) for png in files.values())
