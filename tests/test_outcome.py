"""Imagined vs real outcomes (novapick.evaluate.outcome): the AUC, and that examining a
moment leaves the episode exactly as the plain policy runs it."""
import numpy as np
import pytest

from novapick.evaluate.outcome import outcome_ranking, pairwise_auc, rank_outcomes_at
from novapick.policy.model import load_policy_model
from novapick.train.harness import train


def test_pairwise_auc_counts_pairs_and_ties():
    assert pairwise_auc(np.array([3.0, 2.0, 1.0, 0.0]), np.array([True, True, False, False])) == (1.0, 4)
    assert pairwise_auc(np.array([0.0, 1.0]), np.array([True, False])) == (0.0, 1)
    assert pairwise_auc(np.array([1.0, 1.0]), np.array([True, False])) == (0.5, 1)
    auc, pairs = pairwise_auc(np.array([1.0, 2.0]), np.array([True, True]))
    assert np.isnan(auc) and pairs == 0


@pytest.fixture(scope="module")
def policy(data_dir, tmp_path_factory):
    from novapick.data.normalize import NormStats
    from novapick.policy.vla import VLAPolicy
    out = tmp_path_factory.mktemp("outcome_policy")
    train([str(data_dir)], out, "quick", steps=2, batch_size=2, seq_len=4)
    model, mcfg = load_policy_model(out / "last.pt")
    return VLAPolicy(model, mcfg, NormStats.load(out / "stats.json"), seed=3)


def _episode(policy, env, steps: int, examine_at: int | None = None, k: int = 3):
    obs, _ = env.reset(seed=5, options={"n_items": 2})
    policy.reset(5)
    trace, examined = [], None
    for step in range(steps):
        if step == examine_at:
            examined = rank_outcomes_at(policy, env, obs, k, steps=6)
        obs, *_ = env.step(policy.select_action(obs))
        trace.append(obs["proprio"])
    return np.stack(trace), examined


def test_examining_a_moment_leaves_the_episode_unchanged(policy, env):
    plain, _ = _episode(policy, env, 16)
    examined_trace, examined = _episode(policy, env, 16, examine_at=8)     # step 8: a replan (4 | 8)
    np.testing.assert_array_equal(plain, examined_trace)
    assert examined["scores"].shape == (3,) and examined["held"].shape == (3,)
    assert np.isfinite(examined["scores"]).all()


def test_outcome_ranking_reports_its_figures(policy, env):
    plans = [{"object": env.catalog.split("known")[0].name, "n_items": 1, "seed": 1}]
    r = outcome_ranking(policy, env, plans, k=2, max_moments=1, progress=False, max_steps=40)
    assert set(r) >= {"outcome_auc", "outcome_auc_pooled", "outcome_moments", "outcome_mixed_moments",
                      "outcome_best_held", "outcome_plain_held"}
    assert r["outcome_moments"] >= r["outcome_mixed_moments"] >= 0


def _chosen_and_candidates(policy, env, margin: float):
    """The chunk a K = 3 rehearsal policy with ``margin`` executes at an episode's first
    replan, beside the candidates it drew and their scores (same generator state)."""
    from novapick.policy.vla import VLAPolicy
    rehearsing = VLAPolicy(policy.model, policy.mcfg, policy.stats, rehearsal_k=3, rehearsal_margin=margin, seed=3)
    obs, _ = env.reset(seed=5, options={"n_items": 2})
    rehearsing.reset(5)
    rehearsing.observe(obs)
    cond = rehearsing.current_condition()
    rehearsing.generator.manual_seed(1)
    candidates = rehearsing.sample_chunks(cond, 3)
    scores = rehearsing.rehearsal_scores(candidates)
    rehearsing.generator.manual_seed(1)
    return rehearsing.predict_action_chunk(cond), candidates.numpy(), scores.numpy()


def test_the_rehearsal_margin_decides_when_a_candidate_replaces_the_plain_chunk(policy, env):
    chosen, candidates, scores = _chosen_and_candidates(policy, env, 0.0)
    np.testing.assert_allclose(chosen, candidates[int(scores.argmax())])        # margin 0: the best score wins
    chosen, candidates, _ = _chosen_and_candidates(policy, env, 1e6)
    np.testing.assert_allclose(chosen, candidates[0])                           # an unbeatable margin: plain
    with pytest.raises(ValueError, match="rehearsal_margin"):
        type(policy)(policy.model, policy.mcfg, policy.stats, rehearsal_k=3, rehearsal_margin=-0.1)
