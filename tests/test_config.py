"""The typed boundary: every command's settings compose from the CLI's config, defaults validate, and
the configs are found by an installed package too."""

import dataclasses
import math
import os
import re
import subprocess
import sys

import pytest

from deqlab.cli.compose import available_commands, config_dir, load
from deqlab.errors import InputError
from deqlab.settings import COMMANDS, settings_class
from deqlab.settings.solver import PRESETS, SolverSettings


#: commands with required keys, and values that make them compose
REQUIRED = {"sysid_evaluate": ["run_dir=r", "data_file=d.npz"], "sysid_f16": ["f16.data_dir=DIR"]}


@pytest.mark.parametrize("command", available_commands())
def test_every_command_composes_into_its_settings(command):
    """Defaults compose into the command's dataclass (a command with required keys names the first missing)."""
    cls = settings_class(command)
    if command in REQUIRED:
        with pytest.raises(InputError, match="is required"):
            load(command)
        settings, _ = load(command, REQUIRED[command])
        assert isinstance(settings, cls)
        return
    settings, run = load(command)
    assert isinstance(settings, cls)
    assert run.output_root and run.strict is False


@pytest.mark.parametrize("command", list(COMMANDS))
def test_composed_defaults_equal_the_dataclass_defaults(command):
    """One place for each default: the dataclass (Hydra's node is built from it)."""
    if command == "sysid_evaluate":
        settings, _ = load(command, REQUIRED[command])
        assert settings == settings_class(command)(run_dir="r", data_file="d.npz")
        return
    if command == "sysid_f16":
        from deqlab.settings.sysid_f16 import F16Data

        settings, _ = load(command, REQUIRED[command])
        assert settings == settings_class(command)(f16=F16Data(data_dir="DIR"))
        return
    settings, _ = load(command)
    assert settings == settings_class(command)()


@pytest.mark.parametrize("solver", sorted(PRESETS))
def test_every_solver_preset_composes(solver):
    from deqlab.solvers import SOLVERS

    settings, _ = load("converge", [f"solver={solver}"])
    assert settings.solver == SolverSettings.preset(solver) and solver in SOLVERS


def test_command_changes_to_a_preset_survive_a_solver_switch():
    """hessian keeps its tight tolerance whichever solver is chosen."""
    settings, _ = load("hessian", ["solver=broyden"])
    assert settings.solver.name == "broyden" and settings.solver.atol == 1e-14 and settings.solver.max_iter == 2000
    assert settings.solver.memory == PRESETS["broyden"]["memory"]


def test_unknown_solver_lists_choices():
    with pytest.raises(InputError, match="choose one of: anderson, broyden"):
        load("converge", ["solver=nope"])


@pytest.mark.parametrize("command, override", [
    ("converge", "solver_table=[anderson,broyden,anderson]"), ("bench_solvers", "families=[gaussian,gaussian]"),
    ("bench_hessian", "dtypes=[float32,float32]"), ("bench_nethessian", "tasks=[hessian,laplacian,hessian]"),
    ("hessian", "groups=[W_z,W_z]"), ("nethessian_pinn", "routes=[forward,forward]"),
])
def test_a_list_of_choices_that_names_one_twice_is_refused(command, override):
    """A repeat would run (or print) the same thing twice, or stand where a typo of another entry was meant."""
    key, value = override.split("=")
    twice = next(v for v in value.strip("[]").split(",") if value.count(v) > 1)
    with pytest.raises(InputError, match=f"{key} names '{twice}' twice"):
        load(command, [override])


def test_installed_package_finds_its_configs(tmp_path):
    """The installed deqlab (run outside the source tree) finds config.yaml and composes.

    Under CI's non-editable install this is the data package ``deqlab._configs`` inside the wheel.
    """
    code = ("import deqlab.cli.compose as c; d = c.config_dir(); "
            "print(d); assert (d / 'config.yaml').is_file(); print(type(c.load('converge')[0]).__module__)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "deqlab.settings.converge"


def test_source_configs_are_found():
    assert (config_dir() / "config.yaml").is_file()


def test_settings_modules_import_no_torch():
    code = ("import sys; import deqlab.settings as s; [s.settings_class(c) for c in s.COMMANDS]; "
            "import deqlab.cli.compose; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == "False"


def test_name_lists_mirror_the_library_registries():
    """The settings repeat the library's names so bad input is refused before torch loads; they must agree."""
    from deqlab.implicit.mondeq import BACKWARDS, FORWARD_METHODS
    from deqlab.models.tanh_deq import INITS
    from deqlab.nethessian import ACTIVATIONS
    from deqlab.settings import mondeq, models, sysid
    from deqlab.settings.solver import SOLVER_NAMES
    from deqlab.solvers import SOLVERS
    from deqlab.solvers.prox import NONLINEARITIES
    from deqlab.sysid.data import SIGNALS
    from deqlab.sysid.models import KINDS

    assert set(models.TANH_INITS) == set(INITS)
    assert set(models.PROX_NONLINEARITIES) == set(NONLINEARITIES)
    assert set(models.MLP_ACTIVATIONS) == set(ACTIVATIONS)
    assert set(SOLVER_NAMES) == set(SOLVERS) == set(PRESETS)
    assert set(mondeq.FORWARD_METHODS) == set(FORWARD_METHODS) and set(mondeq.BACKWARDS) == set(BACKWARDS)
    assert set(sysid.KINDS) == set(KINDS) and set(sysid.SIGNALS) == set(SIGNALS)


def test_solver_option_checks_are_the_solvers_own():
    """A bad option is refused the same way through the settings and by the solver itself."""
    import torch

    from deqlab.solvers import get_solver

    for name, option, bad in [("anderson", "memory", 0), ("anderson", "beta", 0.0), ("broyden", "memory", 0),
                              ("fixed_point", "damping", 1.5)]:
        with pytest.raises(InputError):
            SolverSettings.preset(name, **{option: bad})
        with pytest.raises(ValueError):
            get_solver(name)(lambda z: 0.5 * z, torch.zeros(1, 1, dtype=torch.float64), **{option: bad})


def test_settings_are_plain_dataclasses():
    for command in COMMANDS:
        assert dataclasses.is_dataclass(settings_class(command))


@pytest.mark.parametrize("value", ["1", "0", "2", "yes", "on", "null", "[true]"])
def test_a_switch_takes_only_true_or_false(value):
    """OmegaConf alone would read 1, 2, yes and on as True: a typo must not pass as a switch."""
    with pytest.raises(InputError, match=r"^check_fd must be true or false, got"):
        load("hessian", [f"check_fd={value}"])
    with pytest.raises(InputError, match=r"^strict must be true or false, got"):
        load("converge", [f"strict={value}"])
    assert load("hessian", ["check_fd=true", "strict=false"])[0].check_fd is True


@pytest.mark.parametrize("override", ["solver.rtol=1", "solver.rtol=1.5", "solver.rtol=1e300"])
def test_a_relative_tolerance_of_one_or_more_is_refused(override):
    """At rtol >= 1 the start z = 0 meets ||f(z) - z|| <= rtol ||f(z)||: every solve would stop unmoved."""
    with pytest.raises(InputError, match=r"^solver\.rtol must be < 1"):
        load("hessian", [override])
    assert load("hessian", ["solver.rtol=0.5"])[0].solver.rtol == 0.5


@pytest.mark.parametrize("override, message", [
    ("solver.atol=1e300", r"^solver\.atol must lie in \[0, 1\] \(an absolute residual above 1"),
    ("solver.atol=1.5", r"^solver\.atol must lie in \[0, 1\]"),
    ("solver.rtol=0.9", r"^solver\.rtol must lie in \[0, 0\.5\] \(above 1/2, z need not hold one correct bit"),
    ("solver.atol=1e-320", r"^solver\.atol must be 0 or >= 2\.2e-308 \(a smaller positive number is subnormal\), got 1e-320$"),
    ("solver.rtol=4e-320", r"^solver\.rtol must be 0 or >= 2\.2e-308"),
])
def test_a_tolerance_outside_its_meaningful_range_is_refused(override, message):
    """solver.atol=1e300 stopped every solve at z = 0 and rtol=0.9 after about one step, both reported
    converged; a subnormal atol is 0 in float32 and a handful of bits in float64."""
    for command in ("hessian", "converge"):
        with pytest.raises(InputError, match=message):
            load(command, [override])


def test_the_tolerance_range_keeps_every_preset_and_its_ends():
    for override in ("solver.atol=1", "solver.atol=0", "solver.atol=1e-300", "solver.rtol=0.5", "solver.rtol=1e-12"):
        load("hessian", [override, "solver.rtol=1e-9" if "atol=0" in override else "solver.max_iter=10"])
    for name in PRESETS:
        SolverSettings.preset(name)
    # bench lowrank's rtol is a cut-off of singular values, not a stopping rule's: (0, 1) stays its range
    assert load("bench_lowrank", ["rtol=0.7"])[0].rtol == 0.7


@pytest.mark.parametrize("override, message", [
    ("model_settings.rnn.init_scale=abc", "model_settings.rnn.init_scale must be a number, got 'abc'"),
    ("model_settings.rnn.kind=[a]", "model_settings.rnn.kind must be a string, got"),
    ("model_settings.ren=3", "model_settings.ren must be a group of settings, set key by key (e.g. model_settings.ren.kind=...)"),
    ("model_settings.ren.nx=1", "unknown key 'model_settings.ren.nx'; did you mean model_settings.ren.n_x"),
    ("seeds=[a]", "seeds[0] must be an integer, got 'a'"),
    ("train.epochs=null", "train.epochs must be an integer, got null"),
])
def test_messages_name_keys_inside_mappings_and_lists(override, message):
    """A key inside a mapping entry (model_settings.<name>.<key>) or a list item is named and typed as such."""
    with pytest.raises(InputError) as info:
        load("sysid", [override])
    assert message in str(info.value)


@pytest.mark.parametrize("command, override, message", [
    ("bench_hessian", "dtypes=float32", "dtypes must be a list of names, such as [a,b], got 'float32'"),
    ("bench_hessian", "ladder=3", "ladder must be a list of integers, such as [1,2], got 3"),
    ("bench_solvers", "norms=0.5", "norms must be a list of numbers, such as [0.5,1.0], got 0.5"),
    ("converge", "device=[cuda]", "device must be a string, got ['cuda']"),
])
def test_a_wrong_type_is_named_in_the_words_of_its_key(command, override, message):
    """A list key says what its items are; a list given to a string key is shown as written."""
    with pytest.raises(InputError) as info:
        load(command, [override])
    assert str(info.value) == message


@pytest.mark.parametrize("command, overrides, read", [
    ("mondeq", ["eigen.input_std=-0.0"], lambda s: s.eigen.input_std),
    ("lowrank", ["part=study", "study.noise=[-0.0]"], lambda s: s.study.noise[0]),
])
def test_a_negative_zero_is_read_as_zero(command, overrides, read):
    """-0.0 passes every >= 0 check, but NumPy's normal(0, -0.0) raises 'scale < 0' (it tests the sign
    bit): `deqlab mondeq eigen.input_std=-0.0` ended in that traceback. The settings hold +0.0."""
    settings, _ = load(command, overrides)
    assert read(settings) == 0.0 and math.copysign(1.0, read(settings)) == 1.0


@pytest.mark.parametrize("command, override, key", [
    ("converge", "input_std={big}", "input_std"), ("converge", "solver.xtol=-{big}", "solver.xtol"),
    ("mondeq", "sweep.alphas=[1,{big}]", "sweep.alphas[1]"), ("sysid", "model_settings.ren.lr={big}", "model_settings.ren.lr"),
])
def test_an_integer_too_large_for_a_number_key_is_one_line(cli, command, override, key):
    """OmegaConf's float() of an integer beyond float64 raised OverflowError through the merge: a traceback
    (exit 1) from `deqlab converge input_std=<400 digits>`, where input_std=1e400 is refused as not finite."""
    override = override.format(big=2**1100)
    with pytest.raises(InputError, match=rf"^{re.escape(key)} must be finite, got an integer of 332 digits"):
        load(command, [override])
    r = cli("config", command, override)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "must be finite" in r.stderr, r.stderr[-300:]


@pytest.mark.parametrize("command, override, message", [
    ("sysid", "models=[[ren]]", "models[0] must be a string, got ['ren']"),
    ("sysid", "models=[ren,{a:1}]", "models[1] must be a string, got {'a': 1}"),
    ("converge", "solver_table=[[anderson]]", "solver_table[0] must be a string, got ['anderson']"),
])
def test_a_list_or_mapping_inside_a_list_of_names_is_refused_naming_the_item(command, override, message):
    """OmegaConf lets a list into a list of names: `deqlab sysid pendulum models=[[ren]]` ended in
    "bad value: Could not create instance of `Settings`: unhashable type: 'list'"."""
    with pytest.raises(InputError) as info:
        load(command, [override])
    assert str(info.value) == message


def test_sysid_settings_built_in_python_refuse_a_model_that_is_no_name():
    from deqlab.settings.sysid import Settings

    with pytest.raises(InputError, match=r"^model \['ren'\] is not in model_settings"):
        Settings(models=[["ren"]])


@pytest.mark.parametrize("command, override, key", [
    ("sysid", "seeds.5=1", "seeds[5]"), ("sysid", "+seeds.3=1", "seeds[3]"), ("sysid", "data.fractions.3=0.1", "data.fractions[3]"),
])
def test_an_item_past_the_end_of_a_list_is_named(command, override, key):
    """`seeds.5=1` on a list of three said only "bad override: Error merging override seeds.5=1"."""
    with pytest.raises(InputError) as info:
        load(command, [override])
    whole = key.split("[")[0]
    assert str(info.value) == (f"{key} is past the end of the list {whole}: an item can be set only where the list has "
                               f"one; set the whole list instead ({whole}=[...])")
    assert load("converge", ["layers.7=40"])[0].layers[7] == 40


def test_a_resolver_that_warns_still_gives_one_line(recwarn):
    """`model.n_z=${oc.deprecated:seed}` printed OmegaConf's two-line UserWarning before the error."""
    with pytest.raises(InputError, match=r"^model\.n_z must be >= 1, got 0$"):
        load("converge", ["seed=0", "model.n_z=${oc.deprecated:seed}"])
    assert not [w for w in recwarn if "deprecated" in str(w.message)]


@pytest.mark.parametrize("override, message", [
    ("layers=" + "[" * 4990 + "]" * 4990, "nested too deeply"),          # Hydra's parser: RecursionError
    ("model=" + "{a:" * 2400 + "1" + "}" * 2400, "nested too deeply"),
    ("layers=" + "[" * 150 + "1" + "]" * 150, "nested too deeply"),      # parsed, then OmegaConf's RecursionError
    ("model=" + "{n_z:" * 150 + "1" + "}" * 150, "nested too deeply"),
    ("seed=" + "9" * 5000, "an integer has too many digits"),            # Python's int() limit, a ValueError
])
def test_a_value_hydra_or_omegaconf_cannot_follow_is_one_line(cli, override, message):
    """These ended in a traceback thousands of lines long (exit 1): the parser's errors that are not
    Hydra's own exception, and OmegaConf's recursion through a value a hundred levels deep."""
    with pytest.raises(InputError, match=message):
        load("converge", [override])
    r = cli("config", "converge", override)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr[-300:]


def test_an_override_too_long_to_parse_quickly_is_refused_before_parsing(cli):
    """Hydra's parser took 21 s to read a list of 8,000 numbers and minutes for 60,000 (then the run went on)."""
    override = "layers=[" + ",".join(["1"] * 60_000) + "]"
    r = cli("config", "converge", override)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.stderr[-300:]
    assert "the override of 'layers' is 120,008 characters long; at most 10,000" in r.stderr


@pytest.mark.parametrize("overrides, said", [
    (["seed==3"], "cannot read the override 'seed==3': unexpected '='"),
    (["seed=0", "models=[a"], "cannot read the override 'models=[a': '[a' is malformed (a bracket or brace left open?)"),
    (["seed=1=2"], "cannot read the override 'seed=1=2': unexpected '='"),
    (["seed=x,"], "cannot read the override 'seed=x,': it ends where more was expected"),
    (["seed=choice()"], "cannot read the override 'seed=choice()': 'choice()': empty choice is not legal"),
    (["a b=1"], "cannot read the override 'a b=1': 'a b' is not a key (keys are names joined by dots, such as model.n_z)"),
    (["model.=1"], "cannot read the override 'model.=1': 'model.' is not a key"),
    (["seed='a"], "cannot read the override \"seed='a\": the quote ' that opens its value is not closed"),
    (["output_root=~/runs"], "cannot read the override 'output_root=~/runs': quote a value that holds characters such as ~"),
])
def test_an_override_hydras_grammar_refuses_is_named_in_words(cli, overrides, said):
    """Hydra's words listed its grammar's tokens ("expecting {<EOF>, ':', BRACKET_OPEN, ...}"), ended in a link,
    ran past 250 characters and often did not name the override (`models=[a`: "no viable alternative at input
    '[a'"); the advice to quote the value came for a mistake in the key (`a b=1`: "as in a b='1'") or an open
    quote (`seed='a`: "as in seed=''a'")."""
    r = cli("config", "converge", *overrides)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith(f"error: {said}"), r.stderr
    for jargon in ("BRACKET_OPEN", "<EOF>", "hydra.cc", "Error parsing", "bad override", "no viable"):
        assert jargon not in r.stderr, r.stderr


@pytest.mark.parametrize("override", ["~seed", "~seed=0", "~model.n_z"])
def test_deleting_a_key_is_refused_as_such(cli, override):
    """`~seed` (Hydra's delete, without '=') was called a malformed override that should read key=value."""
    key = override.lstrip("~").split("=")[0]
    r = cli("config", "converge", override)
    assert r.exit_code == 2 and r.stderr == f"error: deleting keys is not supported ({override!r}): every key keeps a value; " \
        f"set it instead ({key}=...)\n", r.stderr


def test_a_solver_named_by_solver_name_is_told_how_to_switch_solvers():
    """solver.name=anderson after converge's default fsolve preset keeps fsolve's xtol: the refusal named only
    solver.xtol, an option the user never set, and not how to switch solvers (solver=anderson)."""
    with pytest.raises(InputError) as info:
        load("converge", ["solver.name=anderson"])
    message = str(info.value)
    assert message.startswith("solver 'anderson' takes no option solver.xtol (it takes: memory, lam, beta); "
                              "solver=anderson picks the solver with its own options"), message
    assert "\n" not in message
    settings, _ = load("converge", ["solver=anderson"])
    assert settings.solver.name == "anderson" and settings.solver.xtol is None


@pytest.mark.parametrize("overrides", [["seed=1", "seed=2"], ["model.n_z=3", "model.n_z=4"], ["solver=anderson", "solver=broyden"]])
def test_a_key_set_twice_is_refused(overrides):
    """Hydra kept the last of the two without a word (`--restarts 3 restarts=5` is the same case: the option
    becomes restarts=3)."""
    key = overrides[0].split("=")[0]
    with pytest.raises(InputError, match=rf"^{re.escape(key)} is set twice \('{re.escape(overrides[0])}' and "):
        load("converge", overrides)


def test_a_sweep_that_lists_a_value_twice_is_refused():
    """`deqlab sweep converge seed=0,0` ran the same job twice."""
    from deqlab.cli.compose import screen

    with pytest.raises(InputError, match=r"'seed=0,0' lists 0 twice"):
        screen(["seed=0,0"], sweep=True)
    with pytest.raises(InputError, match=r"lists 2 twice"):
        screen(["seed=range(0,3)", "restarts=1,2,2"], sweep=True)
    assert len(screen(["seed=range(0,3)", "restarts=1,2"], sweep=True)) == 2


@pytest.mark.parametrize("override, key", [("model={n_z:3,n_z:4}", "n_z"), ("model={n_z:3, n_x:{a:1,a:2}}", "a"),
                                           ("model={n_z:3,n_x:2},{n_z:5,n_z:6}", "n_z")])
def test_a_key_repeated_inside_a_mapping_is_refused(override, key):
    """Hydra builds {…} with dict(...): `model={n_z:3,n_z:4}` ran with n_z = 4 without a word."""
    from deqlab.cli.compose import screen

    with pytest.raises(InputError, match=rf"^'{re.escape(override)}' sets {key} twice in one {{\.\.\.}}: give it once$"):
        screen([override], sweep=True)
    assert len(screen(["model={n_z:3,n_x:2}"], sweep=False)) == 1   # distinct keys pass


@pytest.mark.parametrize("command, override, message", [
    ("converge", "layers=[0,1,1]", "layers lists 1 twice"),
    ("mondeq", "sweep.alphas=[1,1.0]", "sweep.alphas lists 1 twice"),
    ("lowrank", "study.k=[2,2]", "study.k lists 2 twice"),
    ("lowrank", "study.noise=[0,0.0]", "study.noise lists 0 twice"),
    ("lowrank", "deq.k=[4,4]", "deq.k lists 4 twice"),
    ("bench_solvers", "sizes=[10,10]", "sizes lists 10 twice"),
    ("bench_solvers", "norms=[0.5,0.5]", "norms lists 0.5 twice"),
    ("bench_hessian", "ladder=[32,32]", "ladder lists 32 twice"),
    ("bench_mondeq", "alphas=[0.5,0.5]", "alphas lists 0.5 twice"),
    ("bench_lowrank", "large_n=[3000,3000]", "large_n lists 3000 twice"),
    ("bench_sysid", "threads=[1,1]", "threads lists 1 twice"),
    ("sysid", "seeds=[1,1]", "seeds lists 1 twice"),
    ("sysid", "lipschitz.steps=[60,60]", "lipschitz.steps lists 60 twice"),
])
def test_a_list_of_cases_that_repeats_one_is_refused(command, override, message):
    """`converge layers=[1,1]`, `mondeq sweep.alphas=[1,1]`, `lowrank study.k=[1,1]` ran the case twice, exit 0 (the
    solver and model lists, and sysid's seeds, refused a repeat already); a list of widths may repeat one."""
    with pytest.raises(InputError, match=rf"^{re.escape(message)}$"):
        load(command, [override])
    assert load("nethessian", ["mlp.hidden=[4,4]"])[0].mlp.hidden == [4, 4]
    assert load("bench_lowrank", ["large_n=[]"])[0].large_n == []


def test_a_key_the_run_does_not_read_is_refused_unless_some_job_of_a_sweep_reads_it():
    """`deqlab lowrank study.n=100` ran part=example with the value ignored (exit 0). In a sweep a key is refused
    only when no job reads it: `hvp_only=false,true probes=8` sets the probes of the matrix-free jobs."""
    from deqlab.cli.compose import refuse_unread, unread_given

    with pytest.raises(InputError, match=r"^study\.n is not read by this run: it is read only by part=study"):
        load("lowrank", ["study.n=100"])
    settings, _ = load("lowrank", ["part=study", "study.n=100"])
    assert settings.study.n == 100
    # a model's settings while models does not name it: the model was not trained, the edit lost
    with pytest.raises(InputError, match=r"^model_settings\.lstm\.n_h is not read by this run: model lstm is not trained"):
        load("sysid", ["models=[ren]", "model_settings.lstm.n_h=4"])
    assert load("sysid", ["models=[ren,lstm]", "model_settings.lstm.n_h=4"])[0].model_settings["lstm"].n_h == 4
    with pytest.raises(InputError, match=r"^model_settings\.lstm\.n_h is not read by this run: model lstm is not trained"):
        load("sysid_f16", ["f16.data_dir=/tmp", "models=[ren]", "model_settings.lstm.n_h=4"])
    dense, _ = load("hessian", [])
    matrix_free, _ = load("hessian", ["hvp_only=true", "probes=8"])
    assert unread_given(dense, ["probes=8"]) == {"probes": dense.unread()["probes"]}
    assert unread_given(matrix_free, ["hvp_only=true", "probes=8"]) == {}
    refuse_unread([unread_given(dense, ["probes=8"]), unread_given(matrix_free, ["probes=8"])])   # some job reads it
    with pytest.raises(InputError, match=r"^probes is not read by any job of the sweep"):
        refuse_unread([unread_given(dense, ["probes=8"]), unread_given(dense, ["probes=8"])])
    # --check-fd likewise (it was a settings error, so `hvp_only=false,true check_fd=true` was refused outright)
    from deqlab.cli.compose import compose, to_settings

    with pytest.raises(InputError, match=r"^check_fd is not read by this run: it \(--check-fd\) compares the dense"):
        load("hessian", ["hvp_only=true", "check_fd=true"])
    fd_free, _ = to_settings("hessian", compose("hessian", ["hvp_only=true", "check_fd=true"]))
    refuse_unread([unread_given(fd_free, ["check_fd=true"]), unread_given(dense, ["check_fd=true"])])


@pytest.mark.parametrize("command, overrides, message", [
    # (each ran with exit 0 and the value ignored; a sweep over lowrank's seed gave identical jobs)
    ("lowrank", ["seed=3"], "seed is not read by this run: it draws the random problems of part=study and part=deq"),
    ("hessian", ["fd_step=1e-4"], "fd_step is not read by this run: it is the step of the finite-difference check"),
    ("bench_mondeq", ["model.n_z=7"], "model.n_z is not read by this run: the bench runs one model at each size"),
    ("train_digits", ["models=[mlp]", "m=0.1"], "m is not read by this run: it is read only by the monotone DEQ"),
    ("train_digits", ["models=[mlp,monotone_deq]", "deq_solver=broyden"], "deq_solver is not read by this run"),
    ("train_digits", ["models=[mlp]", "max_iter=5"], "max_iter is not read by this run: it governs the DEQs' forward"),
    ("bench_nethessian", ["tasks=[laplacian]", "hessian_batch=4"], "hessian_batch is not read by this run: it is the batch"),
    ("bench_nethessian", ["tasks=[hessian]", "batch=4"], "batch is not read by this run: it is the batch of the laplacian"),
    # (said 'study.k contains 30 > study.n = 5': the study's own sizes were checked though part=example never reads them)
    ("lowrank", ["study.n=5"], "study.n is not read by this run: it is read only by part=study"),
    ("lowrank", ["deq.n_z=1"], "deq.n_z is not read by this run: it is read only by part=deq"),
])
def test_a_key_only_another_mode_reads_is_refused_before_its_fit_is_checked(command, overrides, message):
    with pytest.raises(InputError, match="^" + re.escape(message)):
        load(command, overrides)


@pytest.mark.parametrize("command, overrides", [
    ("lowrank", ["part=study", "seed=3"]),
    ("lowrank", ["part=deq", "seed=3"]),
    ("hessian", ["check_fd=true", "fd_step=1e-4"]),
    ("hessian", ["hvp_only=true", "fd_step=1e-4"]),       # (the matrix-free mode checks its HVPs by differences)
    ("bench_mondeq", ["model.m=0.5"]),
    ("train_digits", ["models=[monotone_deq]", "m=0.2", "max_iter=5"]),
    ("train_digits", ["models=[tanh_deq]", "deq_solver=broyden"]),
    ("bench_nethessian", ["tasks=[hessian]", "hessian_batch=4"]),
    ("bench_nethessian", ["tasks=[diag_hessian]", "batch=4"]),
])
def test_the_same_keys_are_taken_where_the_run_reads_them(command, overrides):
    load(command, overrides)


def test_a_part_checks_its_own_sizes_against_each_other():
    with pytest.raises(InputError, match=r"^study\.k contains 30 > study\.n = 5"):
        load("lowrank", ["part=study", "study.n=5"])
    with pytest.raises(InputError, match=r"^deq\.k contains 57 > P = "):
        load("lowrank", ["part=deq", "deq.n_z=1"])


@pytest.mark.parametrize("command, override, key", [
    ("converge", "+seed=3", "seed"),                       # (Hydra's own refusal, reworded)
    ("converge", "+layers=[1]", "layers"),                 # Hydra set these three: exit 0
    ("converge", "+model={n_z:5}", "model"),
    ("sysid", "+seeds=[4]", "seeds"),
    ("converge", "+output_root=/tmp/elsewhere", "output_root"),
])
def test_adding_a_key_the_settings_have_is_refused_whatever_its_value(cli, command, override, key):
    """`+key=` adds a key; on an existing key Hydra refused a scalar but set a list or a mapping."""
    message = f"{key} exists already: set it without '+' ({key}=...)"
    with pytest.raises(InputError) as info:
        load(command, [override])
    assert str(info.value) == message
    r = cli("config", command, override)
    assert r.exit_code == 2 and r.stderr.strip() == f"error: {message}", r.stderr
    assert load(command, ["+" + override])[0] is not None   # `++` sets it, as Hydra documents


@pytest.mark.parametrize("command, override", [
    ("mondeq", "threads={}"), ("bench_hessian", "threads={}"), ("train_digits", "threads={}"), ("sysid", "threads={}"),
    ("nethessian", "threads={}"), ("bench_curvature", "threads={}"), ("bench_sysid", "threads=[1,{}]"),
])
def test_more_threads_than_usable_cpus_are_refused(command, override):
    """`mondeq threads=256` on 2 CPUs was accepted and ran over 110 s (20 s at 16): threads past the CPUs take turns."""
    from deqlab.settings.checks import usable_cpus

    cpus = usable_cpus()
    with pytest.raises(InputError, match=rf"^threads(\[1\])? must be <= {cpus}, the CPUs this process may use, "
                                         rf"got {cpus + 1} \(more threads than CPUs only take turns\)$"):
        load(command, [override.format(cpus + 1)])
    load(command, [override.format(cpus)] if cpus > 1 else [])


def test_usable_cpus_follow_the_affinity_mask(monkeypatch):
    """`taskset -c 0 deqlab ...` leaves one CPU to the process, whatever the machine has."""
    from deqlab.settings import checks

    monkeypatch.setattr(checks.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert checks.usable_cpus() == 1
    assert checks.threads("threads", 1) == 1
    with pytest.raises(InputError, match=r"^threads must be <= 1, "):
        checks.threads("threads", 2)
