"""The object catalog: size, split, determinism, and that the gripper mode matters."""
from novapick.sim.catalog import (CATEGORIES, NOVEL_ONLY_PAIRS, catalog_summary, generate_catalog,
                                  load_catalog)


def test_catalog_has_50_known_and_50_novel_unique_objects():
    cat = load_catalog()
    assert len(cat.split("known")) == 50 and len(cat.split("novel")) == 50
    assert len({o.name for o in cat.objects}) == 100
    assert [o.id for o in cat.objects] == list(range(100))


def test_catalog_is_deterministic_and_seed_dependent():
    assert generate_catalog(2026).to_json() == generate_catalog(2026).to_json()
    assert generate_catalog(1).to_json() != generate_catalog(2).to_json()


def test_novel_shapes_never_appear_in_training():
    cat = load_catalog()
    known_geoms = {o.geometry for o in cat.split("known")}
    novel_mesh_geoms = {o.geometry for o in cat.split("novel")} - {"box"}
    assert known_geoms == {"box", "cylinder", "sphere"}
    assert not novel_mesh_geoms & known_geoms
    # the only novel boxes are transparent cases: a held-out attribute combination
    assert all(o.material == "transparent" for o in cat.split("novel") if o.geometry == "box")
    assert not any(o.material == "transparent" and o.geometry == "box" for o in cat.split("known"))
    assert not {(o.colour, o.category) for o in cat.split("known")} & NOVEL_ONLY_PAIRS


def test_every_object_is_pickable_and_attributes_are_complete():
    for o in load_catalog().objects:
        assert o.suction_ok or o.jaw_ok, o.name
        assert o.best_mode == ("suction" if o.suction_ok else "parallel_jaw")
        assert o.material in ("rigid", "deformable", "transparent", "fragile")
        assert 0.0 < o.mass < 5.0 and 0.0 < o.friction <= 1.0
        assert CATEGORIES[o.category][0] == o.split
        assert o.describe().split()[-1] == o.category


def test_wrong_mode_fails_for_a_substantial_share_of_objects():
    """Objects that only one mode can pick: forcing the other mode must fail (>= 20 %)."""
    summary = catalog_summary(load_catalog())
    for split in ("known", "novel"):
        assert summary[split]["single_mode_only"] / summary[split]["n"] >= 0.2
        assert summary[split]["best_mode"]["suction"] > 0 and summary[split]["best_mode"]["parallel_jaw"] > 0


def test_shape_jitter_rescales_within_bounds_and_relabels_consistently():
    import numpy as np
    import pytest

    from novapick.sim.catalog import SHAPE_JITTER_MAX_HEIGHT, _label, jittered_spec, resting_extents

    rng = np.random.default_rng(0)
    changed_mode = 0
    for o in load_catalog().split("known"):
        assert jittered_spec(o, rng, 0.0) is o
        for _ in range(5):
            j = jittered_spec(o, rng, 0.3)
            ratio = np.array(j.dims) / np.array(o.dims)
            assert np.all((ratio > 0.69) & (ratio < 1.31)), (o.name, ratio)
            assert resting_extents(j.geometry, j.dims)[2] <= max(SHAPE_JITTER_MAX_HEIGHT,
                                                                 resting_extents(o.geometry, o.dims)[2])
            # same object (name, colour, material, friction), labels from the simulator's rules
            assert (j.name, j.colour, j.material, j.friction) == (o.name, o.colour, o.material, o.friction)
            assert (j.suction_friendly, j.suction_ok, j.jaw_ok) == _label(j.geometry, j.dims, j.material,
                                                                         j.mass, j.friction)
            assert j.suction_ok or j.jaw_ok
            changed_mode += j.best_mode != o.best_mode
    assert changed_mode > 0  # resizing does change what the right gripper mode is, sometimes
    with pytest.raises(ValueError, match="shape jitter"):
        jittered_spec(o, rng, 1.5)
