"""What every `train.py` config key means and which values it accepts: the one source for the range
checks at start-up, `train.py --print-config` (a comment per key) and the README's config table.

A key missing here fails `tests/test_config.py`, so a new config field cannot go undocumented.
Types are checked by `utils.config.build` from the dataclass annotations; this table adds ranges.
"""

from __future__ import annotations

from utils.config import Key

EVAL_SPLIT_CHOICES = ("", "mafl-train", "mafl-test", "aflw-train", "aflw-test", "mtfl-train", "mtfl-val",
                      "mtfl-test", "celeba", "folder")

TRAIN_KEYS: dict[str, Key] = {
    # model
    "model.num_points": Key("number of landmarks K", at_least=1),
    "model.fan_init": Key("how the FAN detector starts: scratch, finetune (all fan_109.pth weights train) or "
                          "incremental (its 3x3 kernels frozen and recombined by learned matrices)"),
    "model.fan_pretrained": Key("SAIC's fan_109.pth: auto (fetched once into torch's hub cache and checked), a path, "
                                "or null (fan_init falls back to scratch, with a warning)"),
    "model.fan_features": Key("FAN width (256 in the reference; smaller for CPU-sized runs)", at_least=1),
    "model.hourglass_depth": Key("levels of the hourglass (4 in the reference)", at_least=1),
    "model.gen_conv_dim": Key("generator width", at_least=1),
    "model.gen_res_blocks": Key("residual blocks of the generator", at_least=0),
    "model.temperature": Key("soft-argmax temperature T", above=0),
    "model.heatmap_s": Key("Gaussian spread s = 2 sigma^2 of the bottleneck heatmaps, in heatmap pixels", above=0),
    # data
    "data.dataset": Key("training data set and layout", choices=("celeba", "synthetic", "mafl-train", "aflw",
                                                                 "mtfl", "folder")),
    "data.root": Key("the data set's folder in its original layout; set it on the command line"),
    "data.image_size": Key("crop side S in pixels fed to the networks; a multiple of 4 * 2^model.hourglass_depth",
                           at_least=1),
    "data.angle": Key("rotation std of x' in degrees; x uses twice it (0: no rotation)", at_least=0),
    "data.tight": Key("crop margin around the annotated points, percent of their extent (70 in the paper)",
                      at_least=0),
    "data.tight_jitter": Key("random change of the margin per view, percent", at_least=0),
    "data.flip": Key("random horizontal flips (points relabelled left/right)"),
    "data.num_workers": Key("data loading processes (0: in the training process)", at_least=0),
    "data.skip_bad_images": Key("skip missing, undecodable or truncated images (counted) instead of stopping"),
    # loss
    "loss.pixel_weight": Key("weight of the pixel MSE", at_least=0),
    "loss.perceptual_weight": Key("weight of the VGG16 perceptual loss", at_least=0),
    "loss.perceptual.enabled": Key("use the VGG16 perceptual loss (false: pixel loss only, no VGG weights needed)"),
    "loss.perceptual.weights": Key("VGG16 weights: imagenet (torchvision's cache file), a path to a VGG16 state "
                                   "dict, or random (smoke runs only)"),
    "loss.perceptual.imagenet_normalize": Key("normalise images with ImageNet statistics before VGG16 "
                                              "(the reference does not)"),
    "loss.separation_weight": Key("weight of the term that pushes each face's points apart (0: off, the paper's "
                                  "objective; README, 'Training from scratch')", at_least=0),
    "loss.separation_bandwidth": Key("Gaussian width of the separation term, fraction of the image side",
                                     above=0),
    "loss.equivariance_weight": Key("weight of the term that makes x's points, mapped into x' by the "
                                    "augmentation, meet x''s (0: off)", at_least=0),
    # train
    "train.objective": Key("Table I row: all (the paper's), baseline (SAIC), inter, cycle"),
    "train.aux_source": Key("auxiliary subject's heatmaps: permute = H(x)[perm]; third_pass = the reference's "
                            "extra detector pass"),
    "train.batch_size": Key("images per step and process", at_least=1),
    "train.lr_fan": Key("Adam learning rate of the detector", above=0),
    "train.lr_gen": Key("Adam learning rate of the generator", above=0),
    "train.betas": Key("Adam betas", at_least=0, below=1),
    "train.weight_decay": Key("Adam weight decay", at_least=0),
    "train.step_size": Key("StepLR period in epochs, stepped after each epoch", at_least=1),
    "train.gamma": Key("StepLR factor", above=0),
    "train.grad_clip": Key("max global L2 norm of each network's gradient (0: no clipping)", at_least=0),
    "train.iters_per_epoch": Key("steps per epoch", at_least=1),
    "train.epochs": Key("epochs to train (34: the reference README's evaluated model)", at_least=1),
    "train.max_steps": Key("stop after this many steps (0: epochs * iters_per_epoch)", at_least=0),
    "train.max_minutes": Key("wall-time budget of one invocation: validate, save and stop (0: none)", at_least=0),
    "train.decay_at_budget": Key("when this fraction of train.max_minutes is spent and the learning rate has not "
                                 "decayed yet, take its first step_size decay now, so a slow machine still "
                                 "trains at the lower rate before the budget ends (0, or no max_minutes: off)", at_least=0, below=1),
    "train.init_from": Key("warm start: a checkpoint (ours or imported) whose weights start a new run, with fresh "
                           "optimisers, schedule and step"),
    # runtime
    "runtime.device": Key("auto (CUDA when present), cpu, cuda, cuda:N or mps; under torchrun the local rank's GPU"),
    "runtime.amp": Key("mixed precision: none, or bf16 autocast on CUDA"),
    "runtime.channels_last": Key("channels-last memory format (faster on recent GPUs)"),
    "runtime.compile": Key("torch.compile the model"),
    "runtime.sync_batchnorm": Key("under DDP: BatchNorm statistics over all processes"),
    "runtime.seed": Key("seed of python, numpy, torch and the data order", at_least=0),
    "runtime.deterministic": Key("deterministic algorithms, no cudnn autotuning"),
    "runtime.threads": Key("CPU threads of torch (0: torch's default)", at_least=0),
    # log
    "log.out_dir": Key("parent folder of the run folders"),
    "log.name": Key("run folder prefix (default: the config file's stem)"),
    "log.run_dir": Key("exact run folder instead of <out_dir>/<name>-<date>-<time>; must not hold a checkpoint yet"),
    "log.save_init": Key("also save the untrained model as init.pt (the untrained-detector baseline)"),
    "log.log_every": Key("steps between log.jsonl records", at_least=1),
    "log.image_every": Key("steps between picture grids", at_least=1),
    "log.checkpoint_every": Key("steps between checkpoints", at_least=1),
    "log.keep_checkpoints": Key("step_*.pt files kept besides last.pt and best.pt", at_least=0),
    "log.tensorboard": Key("also log to TensorBoard (needs: pip install tensorboard)"),
    "log.progress": Key("show a progress bar"),
    # validation
    "validation.enabled": Key("validation NME during training (best.pt keeps the lowest)"),
    "validation.every": Key("steps between validations", at_least=1),
    "validation.root": Key("data root of the validation splits (default: data.root)"),
    "validation.fit_split": Key("split the regressor is fitted on (default by data set: mafl-train, mtfl-train, "
                                "aflw-train)", choices=EVAL_SPLIT_CHOICES),
    "validation.eval_split": Key("split the NME is measured on (default: mtfl-val for mtfl, else the tail of "
                                 "fit_split, disjoint)", choices=EVAL_SPLIT_CHOICES),
    "validation.num_fit": Key("images the regressor is fitted on", at_least=1),
    "validation.num_eval": Key("images the NME is measured on", at_least=1),
    "validation.batch_size": Key("images per detector pass during validation", at_least=1),
    "validation.reg": Key("ridge lambda, relative to the largest entry of X^T X", at_least=0),
}
