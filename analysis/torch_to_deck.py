#!/usr/bin/python3
"""A PyTorch nn.Module -> fedhpc's layer list (model.arch = layers), by torch.fx.

    analysis/torch_to_deck.py net.py:Net --input 1,28,28 [--args '[32]'] [--kwargs '{"c": 3}']
    analysis/torch_to_deck.py net.py:Net --input 1,28,28 --weights model.h5 [--state weights.pt]

Traces the module (torch.fx.symbolic_trace) and prints the deck lines

    [model]
    arch = layers
    layers = conv(1,32,k=3,p=1,name=conv1) elu maxpool(3,s=2,ceil) ...

Every layer with parameters keeps its module's name (name=...), so its
state_dict keys are fedhpc's view names. With --weights the module's
state_dict (its initial one, or --state weights.pt loaded into it) is written
as a fedhpc model file (analysis/torch_to_h5.py's format, arch 'layers'):
`fedhpc model --weights model.h5 --set model.layers=...` loads it.

Expressible: Conv2d (square kernel, one stride and padding, groups, any
bias), MaxPool2d / AvgPool2d (square, ceil_mode, padding; AvgPool2d with
count_include_pad=True), AdaptiveAvgPool2d (square output), BatchNorm1d/2d (affine,
tracking, eps 1e-5, momentum 0.1), ReLU, ELU, LeakyReLU, Dropout, Flatten,
Linear, the functional forms (F.relu, torch.flatten(x, 1), x.view(x.size(0),
-1), ...), and residual blocks: an addition of a chain of layers and either
its input (identity) or a 1x1 Conv2d (optionally followed by BatchNorm2d) of
it. Anything else is refused with one line naming the op and the line of the
source that made it; exit 2.
"""
import argparse
import collections
import importlib.util
import json
import operator
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class Refused(Exception):
    pass


def fail(message):
    print("torch_to_deck.py: error: %s" % message, file=sys.stderr)
    sys.exit(2)


def where(node):
    """'net.py:12' of the source line that made the node, if fx kept it."""
    st = node.meta.get("stack_trace") if hasattr(node, "meta") else None
    if st:
        me = os.path.abspath(__file__)
        lines = [ln.strip() for ln in st.strip().splitlines() if ln.strip().startswith("File ")]
        lines = [ln for ln in lines if "/torch/" not in ln and me not in ln]
        if lines:
            last = lines[-1]  # File "x.py", line 12, in forward
            try:
                f = last.split('"')[1]
                ln = last.split("line ")[1].split(",")[0]
                return "%s:%s" % (os.path.basename(f), ln)
            except IndexError:
                pass
    return "node %s" % node.name


def refuse(node, what):
    raise Refused("%s (%s): cannot be expressed as a layer list" % (what, where(node)))


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def square(node, what, v):
    a, b = pair(v)
    if a != b:
        refuse(node, "%s with unequal sizes %s" % (what, (a, b)))
    return a


class Tracer:
    def __init__(self, module, in_shape):
        import torch
        import torch.fx

        self.torch = torch
        self.nn = torch.nn
        self.F = torch.nn.functional
        # Keep the source lines for the refusals.
        torch.fx.proxy.TracerBase.record_stack_traces = True
        self.gm = torch.fx.symbolic_trace(module)
        self.mods = dict(self.gm.named_modules())
        self.in_shape = in_shape
        self.users = collections.defaultdict(list)
        for n in self.gm.graph.nodes:
            for a in n.all_input_nodes:
                self.users[a].append(n)

    # ---- one node -> one layer token (or None: a no-op) ----------------------

    def token(self, n):
        nn, F, torch = self.nn, self.F, self.torch
        if n.op == "call_module":
            m = self.mods[n.target]
            name = n.target
            if isinstance(m, nn.Conv2d):
                if m.padding_mode != "zeros":
                    refuse(n, "Conv2d with padding_mode=%r" % m.padding_mode)
                if pair(m.dilation) != (1, 1):
                    refuse(n, "Conv2d with dilation %s" % (m.dilation,))
                k = square(n, "Conv2d kernel", m.kernel_size)
                s = square(n, "Conv2d stride", m.stride)
                if isinstance(m.padding, str):
                    p = m.padding
                else:
                    p = square(n, "Conv2d padding", m.padding)
                return "conv(%d,%d,k=%d%s%s%s%s,name=%s)" % (
                    m.in_channels, m.out_channels, k, ",s=%d" % s if s != 1 else "",
                    ",p=%s" % p if p not in (0, "valid") else "",
                    ",g=%d" % m.groups if m.groups != 1 else "",
                    ",bias=0" if m.bias is None else "", name)
            if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
                avg = isinstance(m, nn.AvgPool2d)
                if not avg and pair(m.dilation) != (1, 1):
                    refuse(n, "MaxPool2d with dilation")
                if avg and (not m.count_include_pad or m.divisor_override):
                    refuse(n, "AvgPool2d with count_include_pad=False or divisor_override")
                if not avg and m.return_indices:
                    refuse(n, "MaxPool2d with return_indices")
                k = square(n, "pool kernel", m.kernel_size)
                s = square(n, "pool stride", m.stride if m.stride is not None else k)
                p = square(n, "pool padding", m.padding)
                return "%s(%d%s%s%s)" % ("avgpool" if avg else "maxpool", k,
                                         ",s=%d" % s if s != k else "", ",p=%d" % p if p else "",
                                         ",ceil" if m.ceil_mode else "")
            if isinstance(m, nn.AdaptiveAvgPool2d):
                o = pair(m.output_size)
                if o[0] != o[1]:
                    refuse(n, "AdaptiveAvgPool2d(%s) (only square output sizes)" % (m.output_size,))
                return "gap" if o == (1, 1) else "adaptiveavgpool(%d)" % o[0]
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if not m.affine or not m.track_running_stats or m.momentum != 0.1 or m.eps != 1e-5:
                    refuse(n, "%s without the defaults (affine, tracked statistics, eps 1e-5, "
                              "momentum 0.1)" % type(m).__name__)
                return "%s(%d,name=%s)" % ("bn1d" if isinstance(m, nn.BatchNorm1d) else "bn2d",
                                           m.num_features, name)
            if isinstance(m, nn.ReLU):
                return "relu"
            if isinstance(m, nn.ELU):
                return "elu" if m.alpha == 1.0 else "elu(%r)" % m.alpha
            if isinstance(m, nn.LeakyReLU):
                return "leakyrelu(%r)" % m.negative_slope
            if isinstance(m, nn.Dropout):
                return "dropout(%r)" % m.p
            if isinstance(m, nn.Flatten):
                if m.start_dim != 1 or m.end_dim != -1:
                    refuse(n, "Flatten(%d, %d)" % (m.start_dim, m.end_dim))
                return "flatten"
            if isinstance(m, nn.Linear):
                return "linear(%d,%d%s,name=%s)" % (m.in_features, m.out_features,
                                                   ",bias=0" if m.bias is None else "", name)
            if isinstance(m, nn.Identity):
                return None
            refuse(n, "module %s (%s)" % (name, type(m).__name__))
        if n.op in ("call_function", "call_method"):
            t = n.target
            kw = n.kwargs
            if t in (F.relu, torch.relu, "relu", "relu_"):
                return "relu"
            if t in (F.elu, "elu"):
                alpha = n.args[1] if len(n.args) > 1 else kw.get("alpha", 1.0)
                return "elu" if alpha == 1.0 else "elu(%r)" % alpha
            if t in (F.leaky_relu, "leaky_relu"):
                slope = n.args[1] if len(n.args) > 1 else kw.get("negative_slope", 0.01)
                return "leakyrelu(%r)" % slope
            if t in (torch.flatten, "flatten"):
                start = n.args[1] if len(n.args) > 1 else kw.get("start_dim", 0)
                if start != 1:
                    refuse(n, "flatten from dimension %r (only 1)" % (start,))
                return "flatten"
            if t in ("view", "reshape", torch.reshape):
                shape = list(n.args[1:]) if t != torch.reshape else list(n.args[1])
                if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
                    shape = list(shape[0])
                if len(shape) == 2 and shape[1] == -1:
                    return "flatten"
                refuse(n, "%s to %s (only (batch, -1))" % (t, shape))
            if t in (F.max_pool2d, F.avg_pool2d):
                avg = t is F.avg_pool2d
                args = list(n.args[1:])
                names = ["kernel_size", "stride", "padding"] + (["ceil_mode"] if avg else
                                                               ["dilation", "ceil_mode"])
                v = dict(zip(names, args))
                v.update(kw)
                k = square(n, "pool kernel", v["kernel_size"])
                s = v.get("stride")
                s = k if s in (None, [], ()) else square(n, "pool stride", s)
                p = square(n, "pool padding", v.get("padding", 0))
                return "%s(%d%s%s%s)" % ("avgpool" if avg else "maxpool", k,
                                         ",s=%d" % s if s != k else "", ",p=%d" % p if p else "",
                                         ",ceil" if v.get("ceil_mode") else "")
            if t in (F.dropout,):
                return "dropout(%r)" % kw.get("p", n.args[1] if len(n.args) > 1 else 0.5)
            if t in ("contiguous",):
                return None
            if t is getattr and n.args[1] in ("shape",):
                return None
            if t in ("size",):
                return None
            name = getattr(t, "__name__", str(t))
            refuse(n, "function %s" % name)
        refuse(n, "%s %s" % (n.op, n.target))

    # ---- the graph -> a list ---------------------------------------------------

    def is_add(self, n):
        return n.op == "call_function" and n.target in (operator.add, operator.iadd,
                                                          self.torch.add) or (
            n.op == "call_method" and n.target in ("add", "add_"))

    def chain(self, start, stop):
        """Tokens from the node after start up to and including stop, following
        the users; forks become residual blocks. Returns (tokens, last node)."""
        toks = []
        cur = start
        while cur is not stop:
            users = [u for u in self.users[cur] if not self.is_size_use(u)]
            if len(users) == 0:
                break
            if len(users) == 1 and users[0].op == "output":
                break
            if len(users) == 1:
                nxt = users[0]
                if self.is_add(nxt):
                    return toks, cur
                t = self.token(nxt)
                if t:
                    toks.append(t)
                cur = nxt
                continue
            if len(users) != 2:
                refuse(users[0], "a value read by %d layers" % len(users))
            tok, cur = self.residual(cur, users)
            toks.append(tok)
        return toks, cur

    def is_size_use(self, u):
        return (u.op == "call_method" and u.target == "size") or (
            u.op == "call_function" and u.target is getattr)

    def branch(self, first, fork):
        """Layers from first (a user of fork) to the add they meet at."""
        toks = []
        t = self.token(first) if not self.is_add(first) else None
        if self.is_add(first):
            return [], fork, first
        if t:
            toks.append(t)
        more, last = self.chain(first, None)
        toks += more
        users = [u for u in self.users[last] if not self.is_size_use(u)]
        if len(users) != 1 or not self.is_add(users[0]):
            refuse(first, "a branch that does not end in an addition")
        return toks, last, users[0]

    def residual(self, fork, users):
        a_toks, a_last, a_add = self.branch(users[0], fork)
        b_toks, b_last, b_add = self.branch(users[1], fork)
        if a_add is not b_add:
            refuse(users[0], "branches that do not meet at one addition")
        add = a_add
        # The longer branch is the body; the other the shortcut.
        if len(b_toks) > len(a_toks):
            a_toks, b_toks = b_toks, a_toks
        body, short = a_toks, b_toks
        opts = ["name=_"]
        if not short:
            opts.append("proj=identity")
        else:
            conv = short[0]
            if not conv.startswith("conv(") or ",k=1" not in conv or len(short) > 2 or (
                    len(short) == 2 and not short[1].startswith("bn2d(")):
                refuse(add, "a shortcut other than the identity or a 1x1 conv (+ BatchNorm2d): %s"
                       % " ".join(short))
            cname = conv.rsplit("name=", 1)[1].rstrip(")")
            stride = 1
            if ",s=" in conv:
                stride = int(conv.split(",s=")[1].split(",")[0].rstrip(")"))
            has_bias = ",bias=0" not in conv
            if len(short) == 2:
                if has_bias:
                    refuse(add, "a 1x1 projection with both a bias and BatchNorm2d")
                opts += ["proj=convbn", "pconv=%s" % cname,
                         "pbn=%s" % short[1].rsplit("name=", 1)[1].rstrip(")")]
            else:
                if not has_bias:
                    refuse(add, "a 1x1 projection without bias or BatchNorm2d")
                opts += ["proj=conv", "pconv=%s" % cname]
            opts.append("s=%d" % stride)
        if not body:
            refuse(add, "an addition of a value to itself")
        return "res(%s)[%s]" % (",".join(opts), " ".join(body)), add

    def layers(self):
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise Refused("forward takes %d inputs; a layer list has one" % len(placeholders))
        for n in self.gm.graph.nodes:
            if n.op == "get_attr":
                refuse(n, "a tensor attribute %s used in forward" % n.target)
        toks, last = self.chain(placeholders[0], None)
        outs = [u for u in self.users[last] if u.op == "output"]
        if not outs:
            refuse(last, "a graph whose output is not the end of the chain")
        return toks


def load_class(spec):
    path, _, cls = spec.rpartition(":")
    if not path or not cls:
        fail("%r: expected FILE.py:CLASS" % spec)
    if not os.path.exists(path):
        fail("%s: no such file" % path)
    modname = "fh_user_" + os.path.splitext(os.path.basename(path))[0]
    s = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(s)
    sys.modules[modname] = mod
    try:
        s.loader.exec_module(mod)
    except Exception as e:  # noqa: BLE001 - one line for any failure of the user's file
        fail("%s: cannot import (%s: %s)" % (path, type(e).__name__, e))
    if not hasattr(mod, cls):
        fail("%s has no %s" % (path, cls))
    return getattr(mod, cls)


def convert(module, in_shape):
    """The layer list of module (a string); raises Refused."""
    return " ".join(Tracer(module, in_shape).layers())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("spec", help="FILE.py:CLASS, an nn.Module subclass")
    ap.add_argument("--args", default="[]", help="JSON list of the constructor's arguments")
    ap.add_argument("--kwargs", default="{}", help="JSON object of its keyword arguments")
    ap.add_argument("--input", required=True, help="sample shape C,H,W")
    ap.add_argument("--weights", help="also write the module's weights as this model file")
    ap.add_argument("--state", help="with --weights: a state_dict (torch.save) to load first")
    a = ap.parse_args()
    try:
        import torch
    except ImportError as e:
        fail("%s (install Debian's python3-torch)" % e)
    try:
        in_shape = tuple(int(v) for v in a.input.split(","))
        assert len(in_shape) == 3 and min(in_shape) > 0
    except (ValueError, AssertionError):
        fail("--input %r: expected C,H,W with positive sizes" % a.input)
    cls = load_class(a.spec)
    try:
        module = cls(*json.loads(a.args), **json.loads(a.kwargs))
    except Exception as e:  # noqa: BLE001
        fail("%s(...): cannot construct (%s: %s)" % (a.spec, type(e).__name__, e))
    if a.state:
        try:
            module.load_state_dict(torch.load(a.state, map_location="cpu"))
        except Exception as e:  # noqa: BLE001
            fail("%s: cannot load into %s (%s)" % (a.state, a.spec, e))
    module.eval()
    try:
        layers = convert(module, in_shape)
        with torch.no_grad():
            out = module(torch.zeros((1,) + in_shape))
    except Refused as e:
        fail(str(e))
    except Exception as e:  # noqa: BLE001 - tracing errors are one line too
        fail("%s: cannot trace (%s: %s)" % (a.spec, type(e).__name__, str(e).splitlines()[0]))
    if out.dim() != 2:
        fail("%s returns a tensor of shape %s, not [batch, classes]" % (a.spec, tuple(out.shape)))
    classes = out.shape[1]
    if a.weights:
        import fedhpc_zoo as zoo
        state = collections.OrderedDict(
            (k, v.detach().float()) for k, v in module.state_dict().items())
        zoo.write_h5(state, a.weights, "layers", in_shape, classes,
                     config="[model]\narch = layers\nlayers = %s\n" % layers)
    print("[model]\narch = layers\nlayers = %s" % layers)


if __name__ == "__main__":
    main()
