import copy
import importlib
import subprocess
import sys

import pytest
import torch
from torch import nn

import deepscope.dynamics
from deepscope.dynamics.monitor import Monitor
from deepscope.errors import DeepscopeError

LIGHTNING_NAMES = ("lightning", "lightning.pytorch", "lightning.pytorch.callbacks")
# Lightning warns that a CPU DataLoader has few workers and that there is no validation loop
# and (lightning 2.6 with torch 2.13) that its pytree helper builds the deprecated LeafSpec
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
]


def data(n=32, d=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).long()


def network(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))


def loader(batch_size=8, as_dict=False):
    x, y = data()
    if as_dict:
        return torch.utils.data.DataLoader([{"x": a, "y": b} for a, b in zip(x, y)], batch_size=batch_size)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size)


def lightning_module(net, lr, scheduled=False, key=None, pick=None):
    """A LightningModule wrapping ``net``, trained with SGD (and a step-wise StepLR when scheduled);
    ``pick`` takes the scores from a net whose output is not one tensor."""
    lightning = pytest.importorskip("lightning")

    class Module(lightning.pytorch.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = (batch["x"], batch["y"]) if key else batch
            output = self(x)
            return nn.functional.cross_entropy(pick(output) if pick else output, y)

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=lr)
            if not scheduled:
                return optimizer
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    return Module()


def fit(module, callback, steps, data_loader, accumulate=1):
    lightning = pytest.importorskip("lightning")
    trainer = lightning.pytorch.Trainer(
        max_steps=steps,
        accumulate_grad_batches=accumulate,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        callbacks=[callback],
    )
    trainer.fit(module, data_loader)


def plain_loop(net, monitor, steps, lr, scheduled=False, accumulate=1):
    """The same training by hand: SGD over the same batches, the Monitor stepped after each update."""
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5) if scheduled else None
    done, losses = 0, []
    while done < steps:
        for i, (x, y) in enumerate(loader()):
            loss = nn.functional.cross_entropy(net(x), y)
            (loss / accumulate).backward()
            losses.append(loss.item())
            if (i + 1) % accumulate:
                continue
            optimizer.step()
            monitor.step(loss=sum(losses) / len(losses), lr=optimizer.param_groups[0]["lr"], inputs=x, targets=y)
            optimizer.zero_grad()
            losses = []
            if scheduler is not None:
                scheduler.step()
            done += 1
            if done == steps:
                break


def assert_same_history(ours, expected):
    for name in ("step", "loss", "learning_rate", "gradient_norm", "layer_gradient_norms", "update_ratios"):
        assert getattr(ours, name) == getattr(expected, name), name
    for name in ("distance_from_init", "pl_estimate", "measured_step", "sharpness", "sharpness_hvps", "noise_scale"):
        assert getattr(ours, name) == getattr(expected, name), name
    assert ours.dead_relu_fraction == expected.dead_relu_fraction


def test_callback_history_is_bit_identical_to_the_plain_loop():
    pytest.importorskip("lightning")
    from deepscope.dynamics import MonitorCallback

    steps, lr = 6, 0.4  # 4 batches per epoch: the run crosses an epoch boundary
    by_hand = Monitor(network(), loss_fn=nn.functional.cross_entropy, every=2)
    plain_loop(by_hand.model, by_hand, steps, lr, scheduled=True)

    callback = MonitorCallback(Monitor(every=2), loss_fn=nn.functional.cross_entropy)
    module = lightning_module(network(), lr, scheduled=True)
    fit(module, callback, steps, loader())

    # Lightning's automatic optimisation runs the same float operations in the same order
    # (zero_grad, forward, backward, SGD step), so the records are equal, not merely close
    history = callback.result()
    assert_same_history(history, by_hand.result())
    assert history.step == list(range(steps)) and history.measured_step == [0, 2, 4]
    # the learning rate the step used, before Lightning advanced the step-wise scheduler
    assert history.learning_rate == [0.4, 0.4, 0.2, 0.2, 0.1, 0.1]
    assert history.two_over_lr == [5.0, 10.0, 20.0]
    assert callback.monitor.model is module
    assert all(a.equal(b) for a, b in zip(module.net.parameters(), by_hand.model.parameters()))


def test_accumulated_steps_named_submodule_and_custom_batches():
    pytest.importorskip("lightning")
    from deepscope.dynamics import MonitorCallback

    steps, lr = 3, 0.3
    by_hand = Monitor(network(), loss_fn=nn.functional.cross_entropy, every=1)
    plain_loop(by_hand.model, by_hand, steps, lr, accumulate=2)

    callback = MonitorCallback(
        Monitor(every=1),
        loss_fn=nn.functional.cross_entropy,
        module="net",
        batch_to_xy=lambda batch: (batch["x"], batch["y"]),
    )
    module = lightning_module(network(), lr, key=True)
    fit(module, callback, steps, loader(as_dict=True), accumulate=2)

    # one record per optimizer step (not per batch), with the mean loss of the two batches;
    # Lightning scales each batch loss by 1/2 and back, exact in binary floating point
    history = callback.result()
    assert history.step == [0, 1, 2] and history.layers == ["0", "2"]
    assert callback.monitor.model is module.net
    assert_same_history(history, by_hand.result())


class DictNet(nn.Module):
    """``network()`` returning ``{"logits": ...}``, as HuggingFace-style models return named outputs."""

    def __init__(self, seed=0):
        super().__init__()
        self.net = network(seed)

    def forward(self, x):
        return {"logits": self.net(x)}


def test_output_fn_reads_a_dict_output_module_like_its_logits():
    pytest.importorskip("lightning")
    from deepscope.dynamics import MonitorCallback

    steps, lr = 4, 0.4
    by_hand = Monitor(network(), loss_fn=nn.functional.cross_entropy, every=2)
    plain_loop(by_hand.model, by_hand, steps, lr)

    pick = lambda out: out["logits"]  # noqa: E731
    with pytest.raises(DeepscopeError, match="'output_fn' parameter of MonitorCallback"):
        MonitorCallback(Monitor(), output_fn="logits")
    callback = MonitorCallback(Monitor(every=2), loss_fn=nn.functional.cross_entropy, output_fn=pick, module="net")
    module = lightning_module(DictNet(), lr, pick=pick)
    fit(module, callback, steps, loader())
    # the same float operations as the tensor-output loop: sharpness and noise scale equal exactly
    assert callback.monitor.output_fn is pick
    assert_same_history(callback.result(), by_hand.result())
    assert callback.result().measured_step == [0, 2]


def test_bad_arguments_and_batches_raise_deepscope_errors():
    pytest.importorskip("lightning")
    from deepscope.dynamics import MonitorCallback

    with pytest.raises(DeepscopeError, match="'monitor' parameter of MonitorCallback"):
        MonitorCallback(object())
    with pytest.raises(DeepscopeError, match="'module' parameter of MonitorCallback"):
        fit(lightning_module(network(), 0.1), MonitorCallback(Monitor(), module="encoder"), 1, loader())
    with pytest.raises(DeepscopeError, match="batch_to_xy"):
        fit(lightning_module(network(), 0.1, key=True), MonitorCallback(Monitor()), 1, loader(as_dict=True))


def test_missing_lightning_gives_install_hint(monkeypatch):
    for name in LIGHTNING_NAMES:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules makes the import fail
    monkeypatch.delitem(sys.modules, "deepscope.dynamics.lightning", raising=False)
    monkeypatch.setattr(deepscope.dynamics, "lightning", None, raising=False)  # restored after the test
    without = importlib.import_module("deepscope.dynamics.lightning")
    monkeypatch.delitem(sys.modules, "deepscope.dynamics.lightning")
    with pytest.raises(DeepscopeError, match=r'pip install "deepscope\[lightning\]"'):
        without.MonitorCallback(Monitor())


def test_importing_dynamics_does_not_import_lightning():
    code = "import sys, deepscope.dynamics; sys.exit('lightning' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_plain_loop_helper_matches_the_monitor_recipe():
    # guards the oracle: without accumulation or a scheduler the helper is the documented recipe
    reference = Monitor(network(), loss_fn=nn.functional.cross_entropy, every=2)
    net = copy.deepcopy(reference.model)
    optimizer = torch.optim.SGD(reference.model.parameters(), lr=0.4)
    for x, y in loader():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(reference.model(x), y)
        loss.backward()
        optimizer.step()
        reference.step(loss=loss.item(), lr=0.4, inputs=x, targets=y)
    helper = Monitor(net, loss_fn=nn.functional.cross_entropy, every=2)
    plain_loop(net, helper, 4, 0.4)
    assert_same_history(helper.result(), reference.result())
