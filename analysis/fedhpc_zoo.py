"""The fedhpc model zoo in PyTorch: the same architectures as src/nn/zoo.c,
with the same state_dict names, shapes and order, so that weights move between
PyTorch and fedhpc's model files (analysis/torch_to_h5.py, h5_to_torch.py) and
the reference fixtures of the C tests come from the same definitions
(tests/fixtures/make_zoo_fixtures.py, make_resnet_fixtures.py).

    import fedhpc_zoo as zoo
    model = zoo.build("resnet8", (3, 32, 32), 10)
    zoo.write_h5(model.state_dict(), "model.h5", "resnet8", (3, 32, 32), 10)

Architectures (model.arch):
  mlp                 Linear(d, h1) ReLU ... Linear(hk, C): fc1, fc2, ...
  cnn1 .. cnn5        the pFedAFM CNNs (docs ALGORITHMS.md)
  resnet4/6/8/10/18   the LIPS ResNets: the authors' fling/model/resnet_itops.py,
                      torchvision's stem and BasicBlock with 1 to 4 stages
                      ([1], [1,1], [1,1,1], [1,1,1,1], [2,2,2,2] blocks), named
                      as torchvision names them (layer1.0.conv1.weight,
                      layer2.0.downsample.0.weight, fc.weight); lips_key()
                      maps the authors' names (layers.0.0..., shortcut,
                      classifier) onto these
  vgg11_bn            torchvision's configuration A with BatchNorm
  vgg11_lips          the LIPS code's configuration A (5 convs), BatchNorm
                      (features.<i>), classifier a single Linear
                      (classifier.0) as in the CIFAR variants
  resnet8x4/32x4      the CIFAR ResNets of RepDistiller's models/resnet.py
                      (3x3 stem of 32, stages 64/128/256, n = 1 or 5 blocks)

Needs Debian's python3-torch (1.13), python3-numpy and python3-h5py.
"""

import collections
import re

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CNN_SPECS = {  # arch: (conv2 channels, fc1 width)
    "cnn1": (32, 2000),
    "cnn2": (16, 2000),
    "cnn3": (32, 1000),
    "cnn4": (32, 800),
    "cnn5": (32, 500),
}
LIPS_BLOCKS = {
    "resnet4": [1],
    "resnet6": [1, 1],
    "resnet8": [1, 1, 1],
    "resnet10": [1, 1, 1, 1],
    "resnet18": [2, 2, 2, 2],
}
CIFAR_BLOCKS = {"resnet8x4": 1, "resnet32x4": 5}
# the LIPS code's own configuration A (QiaoXiao7282/LIPS fling/model/vgg.py)
VGG11_LIPS = [64, "M", 128, "M", 256, "M", 512, "M", 512, "M"]
VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
ARCHS = ["mlp"] + list(CNN_SPECS) + list(LIPS_BLOCKS) + ["vgg11_bn", "vgg11_lips"] + list(CIFAR_BLOCKS)


class MLP(nn.Module):
    def __init__(self, d, hidden, classes):
        super().__init__()
        widths = [d] + list(hidden) + [classes]
        self.depth = len(widths) - 1
        for k in range(self.depth):
            setattr(self, "fc%d" % (k + 1), nn.Linear(widths[k], widths[k + 1]))

    def forward(self, x):
        x = torch.flatten(x, 1)
        for k in range(self.depth):
            x = getattr(self, "fc%d" % (k + 1))(x)
            if k + 1 < self.depth:
                x = F.relu(x)
        return x


class CNN(nn.Module):
    """pFedAFM: conv 5x5 3->16, maxpool 2, conv 5x5 16->c2, maxpool 2, fc1, fc2
    -> 500, header fc3 -> C (3x32x32 inputs)."""

    def __init__(self, c2, h1, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 5)
        self.conv2 = nn.Conv2d(16, c2, 5)
        self.fc1 = nn.Linear(c2 * 5 * 5, h1)
        self.fc2 = nn.Linear(h1, 500)
        self.fc3 = nn.Linear(500, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class BasicBlock(nn.Module):
    """conv3x3/stride-bn-relu-conv3x3-bn, plus the input or its 1x1/stride
    conv-bn projection when the shape changes, then ReLU."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """LIPS (cifar=False): conv1 7x7/2 pad 3 of 64, bn1, relu, maxpool 3/2 pad
    1, stages of widths 64, 128, 256, 512 (strides 1, 2, 2, 2), adaptive
    average pool, fc. CIFAR (cifar=True, RepDistiller): conv1 3x3/1 pad 1 of
    32, bn1, relu, stages of 64, 128, 256 (strides 1, 2, 2), average pool
    (AvgPool2d(8) there, the same on 32x32 inputs), fc."""

    def __init__(self, blocks, classes, in_c=3, cifar=False):
        super().__init__()
        if cifar:
            self.conv1 = nn.Conv2d(in_c, 32, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(32)
            widths, inplanes = [64, 128, 256], 32
        else:
            self.conv1 = nn.Conv2d(in_c, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            widths, inplanes = [64, 128, 256, 512], 64
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = None if cifar else nn.MaxPool2d(3, 2, 1)
        self.nstages = len(blocks)
        for s, n in enumerate(blocks):
            layers = []
            for b in range(n):
                layers.append(BasicBlock(inplanes, widths[s], 2 if b == 0 and s > 0 else 1))
                inplanes = widths[s]
            setattr(self, "layer%d" % (s + 1), nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, classes)
        for m in self.modules():  # torchvision's, LIPS's and RepDistiller's
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for s in range(self.nstages):
            x = getattr(self, "layer%d" % (s + 1))(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class VGG11BN(nn.Module):
    """torchvision's vgg11_bn features; the classifier of the CIFAR variants:
    flatten and one Linear (512 on 32x32 inputs)."""

    def __init__(self, classes, in_shape=(3, 32, 32), cfg=None):
        super().__init__()
        layers, c, h, w = [], in_shape[0], in_shape[1], in_shape[2]
        for v in cfg or VGG11:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                h, w = h // 2, w // 2
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(c * h * w, classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def build(arch, in_shape=(3, 32, 32), classes=10, hidden=(200, 200)):
    """The model fedhpc builds for model.arch = arch on inputs of shape
    in_shape [C, H, W] ([d, 1, 1] for flat features) with `classes` outputs;
    hidden: model.hidden of the mlp."""
    in_shape = tuple(int(v) for v in in_shape)
    if arch == "mlp":
        return MLP(int(np.prod(in_shape)), hidden, classes)
    if arch in CNN_SPECS:
        if in_shape != (3, 32, 32):
            raise ValueError("%s needs 3x32x32 inputs, not %s" % (arch, in_shape))
        return CNN(*CNN_SPECS[arch], classes)
    if arch in LIPS_BLOCKS:
        return ResNet(LIPS_BLOCKS[arch], classes, in_shape[0])
    if arch in CIFAR_BLOCKS:
        n = CIFAR_BLOCKS[arch]
        return ResNet([n, n, n], classes, in_shape[0], cifar=True)
    if arch == "vgg11_bn":
        return VGG11BN(classes, in_shape)
    if arch == "vgg11_lips":
        return VGG11BN(classes, in_shape, VGG11_LIPS)
    raise ValueError("unknown architecture %r (choices: %s)" % (arch, ", ".join(ARCHS)))


def lips_key(key):
    """A state_dict key of the LIPS authors' ResNet (layers.<s>.<b>...,
    .shortcut.<k>., classifier.) under fedhpc's name (layer<s+1>.<b>...,
    .downsample.<k>., fc.); other keys unchanged."""
    key = re.sub(r"^layers\.(\d+)\.", lambda m: "layer%d." % (int(m.group(1)) + 1), key)
    key = key.replace(".shortcut.", ".downsample.")
    return re.sub(r"^classifier\.", "fc.", key)


def is_buffer_key(key):
    return key.endswith(".running_mean") or key.endswith(".running_var")


def fedhpc_state(state):
    """The tensors fedhpc keeps, in state_dict order: parameters and BatchNorm
    running statistics (num_batches_tracked is not kept)."""
    return collections.OrderedDict(
        (k, v) for k, v in state.items() if not k.endswith(".num_batches_tracked"))


def check_state(state, model):
    """Raises ValueError naming the first key that is missing, extra or of
    another shape than model's."""
    want = fedhpc_state(model.state_dict())
    have = fedhpc_state(state)
    for k, v in want.items():
        if k not in have:
            raise ValueError("no tensor %r (the model has %d tensors; first missing)" % (k, len(want)))
        if tuple(have[k].shape) != tuple(v.shape):
            raise ValueError("%r has shape %s, the model expects %s"
                             % (k, tuple(have[k].shape), tuple(v.shape)))
    for k in have:
        if k not in want:
            raise ValueError("tensor %r is not part of the model" % k)


def write_h5(state, path, arch, in_shape, classes, config=None):
    """A fedhpc model file (src/io/model_file.h): /params/<key> float32 for
    every parameter and running statistic, attributes arch, num_classes,
    input_shape, nparams, nbuffers."""
    import h5py

    state = fedhpc_state(state)
    nparams = sum(v.numel() for k, v in state.items() if not is_buffer_key(k))
    nbuffers = sum(v.numel() for k, v in state.items() if is_buffer_key(k))
    with h5py.File(path, "w") as f:
        g = f.create_group("params")
        for k, v in state.items():
            g.create_dataset(k, data=v.detach().cpu().numpy().astype(np.float32))
        f.attrs["arch"] = np.bytes_(arch)
        f.attrs["num_classes"] = np.int64(classes)
        f.attrs["input_shape"] = np.array(in_shape, dtype=np.int64)
        f.attrs["nparams"] = np.int64(nparams)
        f.attrs["nbuffers"] = np.int64(nbuffers)
        if config is not None:
            f.attrs["config"] = np.bytes_(config)


def read_h5(path):
    """(state, arch, in_shape, classes) of a fedhpc model file; state holds
    every /params dataset as a float32 tensor."""
    import h5py

    with h5py.File(path, "r") as f:
        if "params" not in f:
            raise ValueError("%s has no /params group: not a fedhpc model file" % path)
        state = collections.OrderedDict(
            (k, torch.from_numpy(np.asarray(f["params"][k][()], dtype=np.float32)))
            for k in f["params"])
        arch = f.attrs["arch"]
        arch = arch.decode() if isinstance(arch, bytes) else str(arch)
        in_shape = tuple(int(v) for v in f.attrs["input_shape"])
        classes = int(f.attrs["num_classes"])
    return state, arch, in_shape, classes


def load_into(model, state):
    """Loads fedhpc's tensors into model (num_batches_tracked keeps the
    model's value); shapes and names are checked first."""
    check_state(state, model)
    full = model.state_dict()
    for k, v in fedhpc_state(state).items():
        full[k] = v.reshape(full[k].shape).to(full[k].dtype)
    model.load_state_dict(full)
    return model


# ---- deterministic test weights ------------------------------------------------

M64 = (1 << 64) - 1


def hashed(seed, n, bound):
    """float32 values (2 u - 1) bound, u = the top 24 bits of a splitmix64-style
    mix of (i + 1) * golden + seed * 0x632BE59BD9B4E019, over 2^24; computed in
    double and rounded once to float32, as the C tests do."""
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = i * np.uint64(0x9E3779B97F4A7C15) + np.uint64((seed * 0x632BE59BD9B4E019) & M64)
        z ^= z >> np.uint64(31)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(29)
    u = (z >> np.uint64(40)).astype(np.float64) / 16777216.0
    return ((2.0 * u - 1.0) * bound).astype(np.float32)


def hashed_value(seed, n, kind, fan):
    """The values load_hashed gives a tensor: kind "weight" (a conv or linear
    weight: He-uniform, bound sqrt(6 / fan)), "bias" (1 / sqrt(fan)),
    "bn_weight" (1 + U(-0.5, 0.5)), "bn_bias" (U(-0.5, 0.5)), "running_mean"
    (U(-0.5, 0.5)), "running_var" (1 + U(-0.5, 0.5)), in double before the
    one rounding to float32."""
    if kind == "weight":
        return hashed(seed, n, np.sqrt(6.0 / fan))
    if kind == "bias":
        return hashed(seed, n, 1.0 / np.sqrt(float(fan)))
    h = hashed(seed, n, 1.0).astype(np.float64)
    if kind in ("bn_weight", "running_var"):
        return (1.0 + 0.5 * h).astype(np.float32)
    return (0.5 * h).astype(np.float32)


def load_hashed(model, buffer_seed=5000):
    """Parameter k (named_parameters order) gets hashed_value(k + 1, ...);
    running statistic j (state_dict order, parameters skipped) gets
    hashed_value(buffer_seed + j, ...). A 1-D weight is a BatchNorm's; a bias
    takes the fan of the weight before it."""
    fan, prev_kind = 1, "weight"
    with torch.no_grad():
        for k, (key, p) in enumerate(model.named_parameters()):
            if key.endswith(".weight"):
                if p.dim() > 1:
                    fan, kind = p[0].numel(), "weight"
                else:
                    kind = "bn_weight"
            else:
                kind = "bn_bias" if prev_kind == "bn_weight" else "bias"
            prev_kind = kind
            vals = hashed_value(k + 1, p.numel(), kind, fan)
            p.copy_(torch.from_numpy(vals).reshape(p.shape))
        j = 0
        for key, b in model.state_dict().items():
            if not is_buffer_key(key):
                continue
            kind = "running_mean" if key.endswith(".running_mean") else "running_var"
            b.copy_(torch.from_numpy(hashed_value(buffer_seed + j, b.numel(), kind, 1)).reshape(b.shape))
            j += 1
