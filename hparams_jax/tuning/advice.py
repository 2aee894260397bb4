"""The paper's next step after the tuned 1cycle run, read from `diagnose`'s verdict (Smith
2018, Sec. 3 and 5: the test loss tells under- from over-fitting, and the four hyper-parameters
are tuned together, since a larger LR, a smaller batch, larger momentum and more weight decay
all regularise)."""

from __future__ import annotations

NEXT_STEP = {
    "underfitting": "the test loss was still falling: train longer, or reduce regularisation "
                    "so the network fits more (a larger max_lr, a smaller weight decay, a "
                    "larger batch) (Sec. 3, 4.4)",
    "overfitting": "the test loss rose while the training loss fell: add regularisation (the "
                   "next larger weight decay, a smaller batch or a larger LR, more data "
                   "augmentation) (Sec. 3, 4.4, 5)",
    "unstable": "the training loss spiked: lower max_lr (the range test's next lower pick) or "
                "raise the batch size (Sec. 4.1, 4.2)",
    "diverged": "the loss blew up: lower max_lr, e.g. to the range test's steepest-descent "
                "pick, and run the range test again at the chosen settings (Sec. 4.1)",
    "horizontal_test_loss": "the test loss was flat early while the LR was large, the paper's "
                            "sign of well-balanced regularisation: keep these settings; more "
                            "epochs may still add accuracy (Sec. 3, Figs. 3-4)",
    "healthy": "no sign of under- or over-fitting: keep these settings; more epochs may still "
               "add accuracy (Sec. 3, 5)",
    "insufficient_data": "too few test evaluations to read the curves: evaluate more often "
                         "(eval_every) or train longer (Sec. 3)",
}
NEXT_STEP["none"] = NEXT_STEP["insufficient_data"]


def next_step(verdict: str) -> str:
    """The paper's next step for `diagnose`'s verdict (see the module docstring)."""
    return NEXT_STEP[verdict]
