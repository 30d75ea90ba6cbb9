"""Every command the README and docs print, accounted for.

Each documented command is either run here as printed, from the root of a fresh copy of the repository,
with only its data root replaced and tiny sizes appended (``RUN``); run by another test that says so
(``COVERED``); or named with the reason it cannot run on a CPU-only machine without the release
(``NOT_HERE``). A command added to the docs without an entry fails ``test_every_documented_command_is_accounted_for``,
so the docs cannot gain a command nobody has tried.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import REPO, TINY, run_as_typed

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
STARTS = ("python ", "torchrun ", "CUDA_VISIBLE_DEVICES=", "pip install", "pytest")


def _candidates(text: str):
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        yield from block.split("\n")
    rest = re.sub(r"```.*?```", "", text, flags=re.S)
    for line in rest.split("\n"):
        if line.startswith("    ") and not line.lstrip().startswith(("-", "|")):
            yield line
    for span in re.findall(r"`([^`]+)`", rest):
        yield span.replace("\n", " ")


def documented_commands() -> dict[str, str]:
    """command -> the doc that prints it; continuation lines joined, trailing comments dropped."""
    found: dict[str, str] = {}
    for doc in DOCS:
        pending = ""
        for raw in _candidates(doc.read_text()):
            line = (pending + " " + raw.strip()).strip() if pending else raw.strip()
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1].strip()
                continue
            line = re.sub(r"\s+", " ", re.sub(r"\s+#.*$", "", line)).strip()
            if line.startswith(STARTS):
                found.setdefault(line, doc.relative_to(REPO).as_posix())
    return found


# --- how each command is accounted for ---------------------------------------------------------------------------

RELEASE = ("/path/to/MA-52", "/data/MA-52")  # stand for the user's copy of the release: the tiny dataset here
CACHE = "/fast/ma52_256"
BENCH_LOADER_TINY = ["--release-size", "96x112", "--short-side", "32", "--clips", "3", "--frames", "12", "16",
                     "--repeat", "1", "--loader-clips", "6", "--workers", "1", "--batch-size", "2"]
BENCH_MODEL_TINY = ["--batch-size", "1", "--frames", "2", "--size", "32", "--steps", "1", "--warmup", "1",
                    "--rounds", "1"]
# ma52_manet asks for ImageNet weights, which exist from ResNet-18 up
TINY_R18 = [t if t != "model.depth=10" else "model.depth=18" for t in TINY]
COVERED = {
    'python train.py -m experiment=ma52_manet loss.alpha=0,0.1,1,2,5,10':
        'test_commands_as_typed.py::test_alpha_sweep_as_typed runs the same sweep of the default configuration as typed; test_training_and_evaluation_commands runs experiment=ma52_manet',
    'python scripts/model_zoo.py':
        'test_model_zoo.py::test_model_zoo_doc_lists_the_counted_sizes checks the committed table against the counts the script writes',
    'python scripts/generate_procedural.py ROOT --scale 0.1':
        'test_procedural.py writes the dataset through the same function and checks it (rendering even the smallest scale costs tens of seconds on 2 cores)',
    'python scripts/generate_procedural.py data/proc --scale 0.25 --subject-disjoint --workers 2':
        'test_procedural.py::test_subject_disjoint_splits_really_are (as above)',
    'python train.py data=procedural model=tsm':
        'test_compare_temporal.py::test_compare_temporal_end_to_end trains on data=procedural generated on first use, from a copy of the repository',
    'python train.py experiment=procedural_manet':
        'test_compare_temporal.py::test_compare_temporal_end_to_end runs experiment=procedural_tsn and procedural_tsm, the same recipe with another model',
    "python scripts/compare_temporal.py --models tsn tsm -- data.root='${paths.data_dir}/proc_crf23' data.generate_kwargs.crf=23":
        'test_compare_temporal.py::test_compare_temporal_end_to_end runs the script with --models tsn tsm and overrides after `--`',
    'python scripts/bench_loader.py --clips 12 --workers 2':
        'the script is run as `python scripts/bench_loader.py` (only the clip and worker counts differ)',
    'python scripts/bench_loader.py --release-size 360x432 --clips 6':
        'the script is run as `python scripts/bench_loader.py` (only the size and count differ)',
    'python scripts/bench_model.py model=manet model.depth=18 --batch-size 2 --frames 8 --size 112 --device cpu':
        'the same command with `--steps 3` (docs/scaling.md) is run',
    'pip install -e ".[dev]" && python train.py experiment=quickstart':
        ".ci/run installs; test_commands_as_typed.py::test_quickstart_as_typed runs the command",
    "pytest": ".ci/run runs it",
    "python train.py experiment=quickstart model=framediff":
        "test_extending.py::test_each_command_of_the_doc_runs, after writing the page's files into a copy",
    "python train.py -m experiment=quickstart model=framediff,manet_r18":
        "test_extending.py::test_each_command_of_the_doc_runs, after writing the page's files into a copy",
    "python train.py -m loss.alpha=0,0.1,1,2,5,10": "test_commands_as_typed.py::test_alpha_sweep_as_typed",
    "python scripts/compare_temporal.py": "test_compare_temporal.py::test_compare_temporal_end_to_end runs it as "
        "printed from a copy of the repository, with tiny sizes appended",
    "python scripts/compare_temporal.py --models tsn tsm manet wo_se wo_emb --seeds 0 1 2":
        "test_compare_temporal.py::test_ablations_over_two_seeds_end_to_end runs the script with --models wo_emb "
        "--seeds 0 1 --jobs 2 at tiny size (a new row and the seeds' mean ± std; wo_se's config is checked by "
        "::test_ablation_experiments_derive_from_the_procedural_recipe_as_the_papers_do); "
        "::test_compare_temporal_end_to_end trains "
        "tsn and tsm, test_compare_recipes.py::test_compare_recipes_as_documented experiment=procedural_manet "
        "(15 full runs are 3 to 11 hours on 2 cores)",
    "python scripts/compare_temporal.py --models tsm manet wo_se --seeds 0 1 2 --jobs 2":
        "test_compare_temporal.py::test_ablations_over_two_seeds_end_to_end runs the script with --seeds and --jobs 2 "
        "at tiny size; ::test_compare_temporal_end_to_end trains tsm (9 full runs are 1.5 to 2.5 hours on 2 cores)",
    "python scripts/compare_recipes.py -- loss=paper":
        "test_compare_recipes.py::test_compare_recipes_as_documented runs the script; overrides after -- reach every "
        "training run as for any Hydra override (the 2-seed table is 1.2 to 4.5 hours on 2 cores)",
    "python scripts/compare_temporal.py --models tsn tsm manet wo_se wo_emb --seeds 0 1 2 --jobs 2":
        "test_compare_temporal.py::test_ablations_over_two_seeds_end_to_end runs the script with --models wo_emb "
        "--seeds 0 1 --jobs 2 at tiny size: both runs at once, each with half the cores' threads (the 15 full runs "
        "are hours on 2 cores)",
    "python scripts/compare_recipes.py":
        "test_compare_recipes.py::test_compare_recipes_as_documented runs it as printed from a copy of the repository, "
        "with --seeds 0, --rows baseline hierarchical views and tiny sizes appended (each trained row is a train.py "
        "process); ::test_each_trained_row_is_the_recipe_plus_its_one_switch composes every trained row, balanced "
        "included",
    "python scripts/compare_recipes.py --rows baseline balanced hierarchical reweight views --seeds 0 1 2":
        "test_compare_recipes.py::test_compare_recipes_as_documented runs the script with --rows and --seeds; "
        "::test_each_trained_row_is_the_recipe_plus_its_one_switch composes the reweight row",
    'pip install -e ".[cluster]"': ".ci/run installs the cluster extra",
    'pip install -e ".[search]"': ".ci/run installs the search extra (tests/test_search.py imports the Optuna sweeper)",
    "python train.py -m hparams_search=ma52_optuna experiment=quickstart":
        "test_search.py::test_optuna_search_as_typed_returns_each_jobs_metric runs it as printed, from a copy of "
        "the repository, with two trials at test size",
    "python train.py -m hparams_search=ma52_optuna experiment=ma52_manet data.root=/path/to/MA-52 "
    "hydra.sweeper.n_trials=40":
        "test_search.py runs the same search config as printed with experiment=quickstart (two trials); "
        "test_training_and_evaluation_commands runs experiment=ma52_manet on the tiny dataset",
    'pip install -e ".[embed]"': ".ci/run installs the embed extra",
    "python train.py -m experiment=quickstart model=c3d,tsm":
        "test_model_zoo.py::test_quickstart_sweeps_models_as_typed runs it as typed",
    "python train.py -m experiment=ma52_tsn,ma52_tsm,ma52_tin,ma52_c3d,ma52_i3d,ma52_slowfast,ma52_vswin_t,"
    "ma52_timesformer,ma52_uniformer,ma52_manet data.root=/path/to/MA-52":
        "test_model_zoo.py::test_quickstart_trains_with_every_model_option trains every backbone with the "
        "quickstart (train.py's job), ::test_quickstart_sweeps_models_as_typed runs a multirun over backbones "
        "(python train.py -m experiment=quickstart model=c3d,tsm), and "
        "::test_each_experiment_uses_its_methods_standard_input_and_builds composes each of the ten experiments "
        "(the sweep of ten full-size backbones is minutes of CPU)",
    "python scripts/build_label_embeddings.py --source minilm":
        "test_embeddings.py::test_shipped_matrix_is_reproducible rebuilds the matrix the same way",
    "python scripts/quickstart_as_folders.py data/folders":
        "test_extending.py::test_each_command_of_the_doc_runs, after writing the page's files into a copy",
    "python train.py experiment=quickstart data=folders data.root=data/folders data.input_size=32 "
    "data.short_side=32 loss=ce":
        "test_extending.py::test_each_command_of_the_doc_runs, after writing the page's files into a copy",
    "python train.py experiment=quickstart task=body_part optimized_metric=val/body_F1_macro":
        "test_extending.py::test_each_command_of_the_doc_runs, after writing the page's files into a copy",
    # MA-52-Pro (its root is not MA-52's: RELEASE's replacement would not fit it)
    "python train.py experiment=ma52pro_full data.root=/path/to/MA-52-Pro":
        "test_ma52pro.py::test_the_paper_recipe_sweeps_beta_as_typed trains experiment=ma52pro_full on a stand-in "
        "root; ::test_each_paper_recipe_composes_and_builds_its_model checks the recipe",
    "python train.py experiment=ma52pro_face data.root=/path/to/MA-52-Pro":
        "test_ma52pro.py::test_each_paper_recipe_composes_and_builds_its_model; the face branch alone trains in "
        "::test_compare_emotion_trains_the_three_rows_and_their_figures_match_sklearn",
    "python train.py experiment=ma52pro_action data.root=/path/to/MA-52-Pro":
        "test_ma52pro.py::test_each_paper_recipe_composes_and_builds_its_model; the action branch alone trains in "
        "::test_compare_emotion_trains_the_three_rows_and_their_figures_match_sklearn",
    "python train.py experiment=ma52pro_wo_lower data.root=/path/to/MA-52-Pro":
        "test_ma52pro.py::test_each_paper_recipe_composes_and_builds_its_model and "
        "::test_each_branch_alone_and_the_ablation_without_lower_limb_labels",
    "python train.py -m experiment=ma52pro_full loss.beta=0.01,0.03,0.1,1":
        "test_ma52pro.py::test_the_paper_recipe_sweeps_beta_as_typed",
    "python scripts/compare_emotion.py":
        "test_ma52pro.py::test_compare_emotion_trains_the_three_rows_and_their_figures_match_sklearn runs it as "
        "printed from a copy of the repository, with one epoch and tiny sizes appended",
    'pip install -e ".[faces]"': ".ci/run installs the faces extra",
    "python scripts/bench_long_decode.py": "test_seek.py runs the script with tiny sizes and checks its JSON line",
    "python scripts/detect_faces.py /data/MA-52-Pro":
        "test_detect_faces.py runs python scripts/detect_faces.py ROOT on an MA-52-Pro root written by the test",
    "python scripts/detect_faces.py /data/MA-52-Pro --splits train val --workers 8 --every 2":
        "test_detect_faces.py runs the script with --splits and --workers, and test_every_kth_frame checks --every",
    "python scripts/generate_ma52pro.py data/ma52pro_procedural":
        "test_procedural_pro.py runs the script with tiny sizes and two workers and checks what it writes (the "
        "default size takes minutes)",
    'pip install -e ".[export]"': ".ci/run installs the export extra (tests/test_export.py imports onnx and onnxruntime)",
    'pip install -e ".[video]"': ".ci/run installs the video extra (tests/test_recipes_model.py builds VideoMAE "
        "through transformers)",
    "python train.py experiment=ma52_videomae_b data.root=/path/to/MA-52":
        "test_recipes_model.py::test_recipe_trains_tiny_with_the_hierarchical_head runs the experiment as train.py's "
        "job on the tiny data at a tiny width (the recipe's hub weights are never downloaded in tests); "
        "test_recipes_model.py::test_recipes_compose_with_their_settings checks the full-size settings",
    "python train.py experiment=ma52_sota data.root=/path/to/MA-52":
        "test_recipes_model.py::test_recipe_trains_tiny_with_the_hierarchical_head (as above)",
    "python scripts/export.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt format=onnx":
        "test_export.py::test_the_documented_commands_write_and_report_parity runs it as printed from the repository "
        "root, on a copy of a tiny train.py run's checkpoint",
    "python scripts/export.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt format=torchscript "
    "out=exported/manet.torchscript.pt":
        "test_export.py::test_the_documented_commands_write_and_report_parity (as above; out= in the test's folder)",
    "python predict.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt input=interview.mp4":
        "test_predict.py runs it as printed from the repository root, on an emotion checkpoint built there and a "
        "video written there",
    "python predict.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt input=videos/ predict.overlay=true":
        "test_predict.py runs it as printed from the repository root, on a copy of a tiny train.py run's "
        "checkpoint and a folder of videos written there",
    "python predict.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt input=videos/ "
    "predict.test_views.clips=3 predict.test_views.crops=3":
        "test_predict.py::test_test_time_views_are_the_checkpoints_or_the_command_lines runs it as printed from the "
        "repository root, on a copy of a tiny train.py run's checkpoint and a folder of videos written there",
    "python predict.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt input=videos.txt "
    "hydra.run.dir=logs/predict/runs/<time>":
        "test_predict.py runs it as printed, in the run folder of the folder command, and checks what it skipped",
    "python scripts/eval_timeline.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt":
        "test_eval_timeline.py runs it as printed from the repository root, on a copy of a tiny train.py run's "
        "checkpoint, with two 3 s videos and its output folder appended",
    # docs/results.md and the README's "From sweeps to tables"
    "python train.py -m experiment=quickstart seed=0,1 loss.alpha=0,5":
        "tests/conftest.py::tiny_sweep runs it as printed from the repository root (tiny sizes, a data root and "
        "the three loggers appended); test_results.py and test_notebooks.py read the sweep",
    "python scripts/collect_results.py logs/train/multiruns/<time>":
        "test_results.py::test_collect_results_writes_markdown_csv_latex_and_the_plot runs it on the tiny sweep's "
        "folder and checks the files against metrics.json",
    "python scripts/collect_results.py logs/train/multiruns/<time> --layout table4":
        "test_results.py::test_the_paper_layout_table4 runs it on the tiny sweep's folder",
    'pip install -e ".[notebooks]"': ".ci/run installs the notebooks extra (tests/test_notebooks.py executes the "
        "notebooks with nbclient)",
    # docs/recipes.md, the data recipes
    "python train.py experiment=ma52_manet data.root=/path/to/MA-52 data.sampler=class_balanced data.balance_power=0.5":
        "test_recipes.py::test_documented_recipe_commands_compose_and_switch_their_recipe_on composes it as train.py "
        "does and sets up its data (the sampler is on); test_ensemble.py trains with data.sampler=class_balanced",
    "python train.py experiment=ma52_manet data.root=/path/to/MA-52 data.rare_aug=true":
        "test_recipes.py::test_documented_recipe_commands_compose_and_switch_their_recipe_on (as above); "
        "test_ensemble.py trains with data.rare_aug=true",
    "python train.py experiment=ma52_manet data.root=/path/to/MA-52 'data.train_splits=[train,val]'":
        "test_recipes.py::test_documented_recipe_commands_compose_and_switch_their_recipe_on (as above); "
        "test_ensemble.py::test_training_on_train_and_val_runs_every_clip_of_both_and_evaluates_the_final_weights "
        "trains with data.train_splits=[train,val]",
    "python train.py experiment=ma52_manet data.root=/path/to/MA-52 data.person_crop=/path/to/MA-52/person_boxes":
        "test_recipes.py::test_documented_recipe_commands_compose_and_switch_their_recipe_on (as above, with a box "
        "folder written by the test); ::test_detect_people_finds_the_off_centre_figure_and_crops_follow_it checks the "
        "crops",
    "python eval.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt split=test data.test_views.clips=2 "
    "data.test_views.crops=3":
        "test_ensemble.py runs eval.py's job with data.test_views on the command line and train.py's with two "
        "temporal views, checked against the views computed by hand; test_recipes.py::"
        "test_views_one_is_the_centre_clip_and_several_are_the_shifted_clips_and_three_crops checks the three crops",
    "python scripts/ensemble.py logs/train/runs/<run1> logs/train/runs/<run2> --split test --out ensembles/two":
        "test_ensemble.py::test_ensemble_of_two_runs_is_the_hand_average_and_scores_as_sklearn runs the script's "
        "main with two run folders, --split test and --out",
    "python scripts/detect_people.py /path/to/MA-52 /path/to/MA-52/person_boxes":
        "test_recipes.py::test_detect_people_finds_the_off_centre_figure_and_crops_follow_it runs the script's main "
        "with a root and an output folder (one split, 3 frames a clip)",
}

NOT_HERE = {
    "python train.py experiment=procedural_wo_se loss=released seed=0":
        "a 20-minute training at the stand-in recipe's size; procedural_wo_se trains at tiny size in "
        "test_compare_temporal.py",
    "python train.py -m experiment=procedural_manet loss=paper loss.alpha=0.1,0.5,1":
        "three 14-minute trainings at the stand-in recipe's size; test_commands_as_typed.py::test_alpha_sweep_as_typed "
        "runs a loss.alpha sweep as typed",
    "python train.py -m experiment=procedural_wo_se,procedural_manet loss=released seed=0,1,2":
        "six such trainings (about two hours)",
    "python train.py -m hydra/launcher=submitit_slurm hydra.launcher.partition=... trainer=ddp trainer.devices=4 ...":
        "a template (`...`) for a SLURM cluster; test_distributed.py runs the submitit_local launcher",
    "torchrun ... train.py trainer=ddp hydra.run.dir=<run>": "a template (`...`) for several nodes",
    "python scripts/bench_model.py model=manet model.depth=50 --batch-size 32 --frames 8 --size 224 --device cuda":
        "needs a CUDA GPU; test_bench_model.py::test_bench_refuses_cuda_without_a_gpu checks the refusal",
    "python scripts/generate_procedural.py ROOT [--scale S] [--seed N] [--subject-disjoint] ...":
        "a usage synopsis; the concrete generate_procedural lines are run",
    "python train.py experiment=ma52_manet trainer=ddp trainer.devices=4": "needs 4 GPUs; trainer=ddp_sim "
        "(test_distributed.py) runs the same DDP code on 2 CPU processes",
    "python train.py experiment=ma52_manet trainer=ddp trainer.devices=4 trainer.sync_batchnorm=true":
        "needs 4 GPUs (as above)",
    "torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=$HEAD:29500 train.py "
    "experiment=ma52_manet trainer=ddp trainer.devices=8 trainer.num_nodes=2 hydra.run.dir=logs/train/runs/manet_2x8":
        "needs 2 nodes of 8 GPUs; test_distributed.py checks the torchrun environment handling",
    "python train.py -m hydra/launcher=submitit_slurm hydra.launcher.partition=gpu hydra.launcher.timeout_min=600 "
    "experiment=ma52_manet trainer=ddp trainer.devices=4 loss.alpha=0,0.1,1,2,5,10": "needs a SLURM cluster",
    "python train.py -m hydra/launcher=submitit_local hydra.launcher.gpus_per_node=4 trainer=gpu loss.alpha=0,1,2,5":
        "needs 4 GPUs; test_distributed.py::test_submitit_local_sweep_runs_each_job_in_its_own_process runs the "
        "launcher on the CPU",
    "python train.py -m ...": "a template (`...`)",
    "CUDA_VISIBLE_DEVICES=0 python train.py trainer=gpu loss.alpha=0 &": "needs a GPU; "
        "test_distributed.py::test_gpu_trainer_without_gpu_is_refused checks the refusal",
    "CUDA_VISIBLE_DEVICES=1 python train.py trainer=gpu loss.alpha=1 &": "needs a GPU (as above)",
    "python train.py trainer=ddp ...": "a template (`...`)",
    "pip install --no-deps facenet-pytorch==2.6.0":
        "installed by hand outside the extras (its metadata pins torch<2.3); "
        "test_detect_faces.py::test_mtcnn_tracks_have_landmarks_on_the_face runs where it is installed",
    "python scripts/detect_faces.py /data/MA-52-Pro --detector mtcnn": "needs facenet-pytorch (as above)",
    "python train.py -m experiment=ma52_tsm,ma52_wo_se,ma52_wo_emb,ma52_manet":
        "four ResNet-50 runs on the release; test_results.py::test_table5_experiments_compose_to_their_rows "
        "composes each experiment and checks its row of Table V, and tests/conftest.py::tiny_sweep runs a multirun",
    "python scripts/collect_results.py --wandb my-team/microaction --group <time> --layout table4":
        "needs a W&B account and the network; test_results.py::test_wandb_runs_as_the_source runs the same code "
        "on a stand-in of W&B's API, and checks the error when the API cannot be reached",
}

# command -> (tiny arguments appended, what the run must leave behind). Placeholders in the printed command
# ({release}, {cache}, {glove}, <run>/best_epoch042) are replaced by what this machine has.
RUN = {
    "python train.py experiment=ma52_manet data.root=/path/to/MA-52": TINY_R18,
    "python eval.py ckpt_path=logs/train/runs/<run>/checkpoints/best_epoch042.ckpt": [],
    "python eval.py ckpt_path=... split=test": [],
    # the README sets the root once for this (`export MA52_ROOT=...`); here it is given as data.root
    "python train.py -m experiment=ma52_manet data.num_segments=4,8,16":
        ["data.root={release}", *(t for t in TINY_R18 if "num_segments" not in t)],
    "python train.py -m experiment=ma52_manet loss=paper,released": ["data.root={release}", *TINY_R18],
    "python scripts/prepare_ma52.py /data/MA-52": [],
    "python scripts/prepare_ma52.py /data/MA-52 /fast/ma52_256": [],
    "python train.py experiment=ma52_manet data.root=/fast/ma52_256": TINY_R18,
    "python scripts/bench_loader.py": BENCH_LOADER_TINY,
    "python scripts/bench_predict.py": ["--minutes", "0.2", "0.4", "--fps", "5"],
    "python scripts/bench_jobs.py": ["--steps", "2", "--", *(t for t in TINY if not t.startswith("trainer.limit_val")),
                                     "data.root={release}", "data.generate=null", "data.num_workers=0"],
    "python scripts/bench_loader.py --source /data/MA-52 --split val --clips 24": BENCH_LOADER_TINY,
    "python scripts/bench_model.py model=manet model.depth=18 --batch-size 2 --frames 8 --size 112 --device cpu "
    "--steps 3": BENCH_MODEL_TINY,
    "python scripts/build_label_embeddings.py --source glove --glove glove.840B.300d.txt --out glove52.npy": [],
    "python scripts/build_label_embeddings.py --source glove --glove /path/to/glove.840B.300d.txt "
    "--out label_embeddings_glove.npy": [],
}

def test_every_documented_command_is_accounted_for():
    documented = documented_commands()
    accounted = set(COVERED) | set(NOT_HERE) | set(RUN)
    unaccounted = {c: doc for c, doc in documented.items() if c not in accounted}
    assert not unaccounted, f"documented commands nobody runs or explains: {unaccounted}"
    stale = accounted - set(documented)
    assert not stale, f"entries for commands the docs no longer print: {stale}"
    assert not set(COVERED) & set(RUN) and not set(NOT_HERE) & set(RUN)


def _glove_file(path: Path) -> Path:
    """A small GloVe-format text file holding every word the class names need (random 300-d vectors)."""
    from microaction.classes import class_table
    from microaction.embeddings_build import label_words

    words = sorted({w for n in class_table().fine_names for w in label_words(n)})
    rng = np.random.default_rng(0)
    path.write_text("".join(f"{w} {' '.join(f'{v:.4f}' for v in rng.normal(size=300))}\n" for w in ["the", *words]))
    return path


def _argv(command: str, tiny_root: Path, cache: Path, checkout: Path) -> str:
    for release in RELEASE:
        command = command.replace(release, str(tiny_root))
    command = command.replace(CACHE, str(cache)).replace(" ROOT ", f" {checkout / 'data' / 'proc_root'} ")
    return command.replace("/path/to/glove.840B.300d.txt", "glove.840B.300d.txt")


@pytest.fixture(scope="module")
def docs_run(checkout, tiny_root, tmp_path_factory):
    """Runs documented commands in the checkout; remembers the last single train run for eval.py."""
    cache = tmp_path_factory.mktemp("cache") / "ma52_256"
    state: dict = {"cache": cache}

    def run(command: str) -> str:
        printed = _argv(command, tiny_root, cache, checkout)
        if "<run>" in printed or "ckpt_path=..." in printed:
            best = state["best"]
            printed = re.sub(r"ckpt_path=\S+", f"ckpt_path={best}", printed)
        extra = [a.replace("{release}", str(tiny_root)) for a in RUN[command]]
        proc = run_as_typed(printed, checkout, extra)
        return proc.stdout + proc.stderr

    state["run"] = run
    return state


def _last_json(output: str) -> dict:
    """The JSON object a script prints as its last line of results."""
    return json.loads([ln for ln in output.splitlines() if ln.startswith("{")][-1])


def _new_runs(checkout: Path, before: set[Path]) -> list[Path]:
    runs = checkout / "logs" / "train" / "runs"
    return sorted(p for p in runs.iterdir() if p not in before) if runs.is_dir() else []


def _runs(checkout: Path) -> set[Path]:
    runs = checkout / "logs" / "train" / "runs"
    return set(runs.iterdir()) if runs.is_dir() else set()


def test_training_and_evaluation_commands(docs_run, checkout):
    """Train as the README says, then evaluate its best checkpoint by the relative path the README prints."""
    before = _runs(checkout)
    docs_run["run"]("python train.py experiment=ma52_manet data.root=/path/to/MA-52")
    (run,) = _new_runs(checkout, before)
    trained = json.loads((run / "metrics.json").read_text())
    (best,) = (run / "checkpoints").glob("best_epoch*.ckpt")
    docs_run["best"] = best.relative_to(checkout).as_posix()  # logs/train/runs/<run>/checkpoints/best_epochNNN.ckpt
    before = set((checkout / "logs" / "eval" / "runs").glob("*")) if (checkout / "logs" / "eval").is_dir() else set()
    docs_run["run"]("python eval.py ckpt_path=logs/train/runs/<run>/checkpoints/best_epoch042.ckpt")
    docs_run["run"]("python eval.py ckpt_path=... split=test")
    evals = sorted(p for p in (checkout / "logs" / "eval" / "runs").iterdir() if p not in before)
    assert len(evals) == 2
    # training scored one batch of val (the tiny sizes); eval.py scores the whole split with its weights
    assert trained["val"]["num_clips"] == 4
    val = json.loads((evals[0] / "metrics.json").read_text())
    assert val["val"]["num_clips"] == 52 and val["checkpoint"].endswith(best.name)
    with (evals[1] / "submission_test.csv").open() as f:
        assert len(f.read().splitlines()) == 1 + 52


@pytest.mark.parametrize("command", ["python train.py -m experiment=ma52_manet data.num_segments=4,8,16",
                                     "python train.py -m experiment=ma52_manet loss=paper,released"])
def test_sweep_commands(docs_run, checkout, command):
    multiruns = checkout / "logs" / "train" / "multiruns"
    before = set(multiruns.iterdir()) if multiruns.is_dir() else set()
    docs_run["run"](command)
    (sweep,) = [p for p in multiruns.iterdir() if p not in before]
    key, values = command.split()[-1].split("=")
    jobs = sorted((p for p in sweep.iterdir() if p.is_dir()), key=lambda p: int(p.name.split("_")[0]))
    assert [j.name for j in jobs] == [f"{i}_{key}={v}" for i, v in enumerate(values.split(","))]
    assert all((j / "metrics.json").is_file() for j in jobs)
    if key == "loss":  # each job trained with the form it names (docs/label_embeddings.md)
        forms = [yaml.safe_load((j / "config_resolved.yaml").read_text())["loss"] for j in jobs]
        assert [(f["embedding_distance"], f["alpha"]) for f in forms] == [("euclidean", 5.0), ("mse", 50.0)]


def test_preparation_commands(docs_run, checkout):
    """Verify, build the cache, train on the cache: the three lines of 'Preparing MA-52'."""
    out = docs_run["run"]("python scripts/prepare_ma52.py /data/MA-52")
    assert "0 problems" in out and (checkout / "ma52_verify_report.txt").is_file()
    docs_run["run"]("python scripts/prepare_ma52.py /data/MA-52 /fast/ma52_256")
    assert (docs_run["cache"] / "manifest.csv").is_file()
    before = _runs(checkout)
    docs_run["run"]("python train.py experiment=ma52_manet data.root=/fast/ma52_256")
    (run,) = _new_runs(checkout, before)
    assert json.loads((run / "metrics.json").read_text())["val"]["num_clips"] > 0


@pytest.mark.parametrize("command", [c for c in RUN if c.startswith(("python scripts/bench_", "python scripts/build_"))])
def test_benchmark_and_embedding_commands(docs_run, checkout, command):
    if "glove" in command:
        _glove_file(checkout / "glove.840B.300d.txt")
    out = docs_run["run"](command)
    if "bench_" in command:
        assert _last_json(out)
    else:
        target = shlex.split(command)[-1]
        assert np.load(checkout / target).shape[0] == 52
