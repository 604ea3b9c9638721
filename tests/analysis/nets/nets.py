"""Networks for tests/analysis/test_torch_to_deck.sh: the ones fedhpc ships as
named layer lists, written as PyTorch modules, and modules the tracer refuses."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class AugFLMeta(nn.Module):
    """AugFL's Fashion-MNIST meta-model."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding="same")
        self.conv2 = nn.Conv2d(32, 64, 3, padding="same")
        self.fc1 = nn.Linear(3136, classes)

    def forward(self, x):
        x = F.max_pool2d(F.elu(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(F.elu(self.conv2(x)), 3, 2, ceil_mode=True)
        return self.fc1(torch.flatten(x, 1))


class PFLlibCNN(nn.Module):
    """PFLlib's FedAvgCNN (in_features=1, dim=1024)."""

    def __init__(self, in_features=1, num_classes=10, dim=1024):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_features, 32, kernel_size=5, padding=0, stride=1, bias=True),
                                   nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=(2, 2)))
        self.conv2 = nn.Sequential(nn.Conv2d(32, 64, kernel_size=5, padding=0, stride=1, bias=True),
                                   nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=(2, 2)))
        self.fc1 = nn.Sequential(nn.Linear(dim, 512), nn.ReLU(inplace=True))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        out = self.conv1(x)
        out = self.conv2(out)
        out = torch.flatten(out, 1)
        out = self.fc1(out)
        return self.fc(out)


class McMahanCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(3136, 512)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        return self.fc2(F.relu(self.fc1(x)))


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
                                        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class SmallResNet(nn.Module):
    """A CIFAR-style ResNet with identity and projection shortcuts, LeakyReLU,
    an average pool with ceil_mode and dropout."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = Block(16, 16, 1)
        self.layer2 = Block(16, 32, 2)
        self.pool = nn.AvgPool2d(3, 2, ceil_mode=True)
        self.act = nn.LeakyReLU(0.1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x = self.gap(self.act(self.pool(x)))
        return self.fc(self.drop(torch.flatten(x, 1)))


class Sigmoidal(nn.Module):
    """Refused: torch.sigmoid."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return torch.sigmoid(self.fc(torch.flatten(x, 1)))


class Grouped(nn.Module):
    """Grouped and depthwise convolutions."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, groups=2)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
        self.fc = nn.Linear(4 * 26 * 26, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.relu(self.dw(self.conv(x))), 1))


class Dilated(nn.Module):
    """Refused: a dilated convolution."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, dilation=2)
        self.fc = nn.Linear(4 * 24 * 24, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), 1))
