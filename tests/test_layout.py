"""The package layout is the map of the system: architectures in ``backbones/models/``, and
no import circle anywhere in the package (lazy imports inside functions included)."""
import ast
import os
import os.path as osp

from conftest import REPO

PACKAGE = osp.join(REPO, 'backbones')


def _modules():
    """{dotted module name: file} of every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                dotted = osp.relpath(path, REPO)[:-3].replace(os.sep, '.')
                found[dotted.removesuffix('.__init__')] = path
    return found


def _imports(module, path, modules):
    """Modules of the package that ``module`` imports, at any depth of its code."""
    package = module if path.endswith('__init__.py') else module.rpartition('.')[0]
    targets = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split('.')
            base = '.'.join(parts[:len(parts) - node.level + 1]) if node.level else ''
            name = '.'.join(p for p in (base, node.module) if p)
            # ``from pkg import mod`` imports the module pkg.mod, else a name of pkg
            targets.update(f'{name}.{a.name}' if f'{name}.{a.name}' in modules else name
                           for a in node.names)
    # importing a.b.c runs the packages a.b (and a) first: a circle through a package's
    # __init__ counts too (the package root, which imports everything, aside)
    # (a module's own packages are already running when it runs)
    own = {module.rsplit('.', i)[0] for i in range(1, module.count('.') + 1)}
    for target in list(targets):
        parts = target.split('.')
        targets.update('.'.join(parts[:i]) for i in range(2, len(parts))
                       if '.'.join(parts[:i]) not in own)
    return {t for t in targets if t in modules and t != module}


def import_cycles(modules):
    """Strongly connected groups of more than one module in the import graph (Tarjan)."""
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_circles():
    assert import_cycles(_modules()) == []


def test_the_cycle_check_finds_a_circle(tmp_path):
    """The check itself can fail: two modules importing each other (one lazily) are found."""
    pkg = tmp_path / 'backbones'
    (pkg / 'ops').mkdir(parents=True)
    (pkg / '__init__.py').write_text('')
    (pkg / 'ops' / '__init__.py').write_text('from .a import f\n')
    (pkg / 'ops' / 'a.py').write_text('from . import b\n\ndef f():\n    return b\n')
    (pkg / 'ops' / 'b.py').write_text('def g():\n    from .a import f\n    return f\n')
    modules = {'backbones': str(pkg / '__init__.py'),
               'backbones.ops': str(pkg / 'ops' / '__init__.py'),
               'backbones.ops.a': str(pkg / 'ops' / 'a.py'),
               'backbones.ops.b': str(pkg / 'ops' / 'b.py')}
    assert import_cycles(modules) == [['backbones.ops.a', 'backbones.ops.b']]


def test_a_circle_through_a_package_init_is_found(tmp_path):
    """engine.x imports models.base, whose package __init__ imports models.y, which imports
    engine.x: Python runs models/__init__ first, so this is a circle too."""
    files = {'backbones/__init__.py': '', 'backbones/engine/__init__.py': '',
             'backbones/engine/x.py': 'from ..models.base import f\n',
             'backbones/models/__init__.py': 'from .y import g\n',
             'backbones/models/base.py': 'def f():\n    pass\n',
             'backbones/models/y.py': 'from ..engine.x import f\n'}
    modules = {}
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        modules[rel[:-3].replace('/', '.').removesuffix('.__init__')] = str(path)
    assert import_cycles(modules) == [['backbones.engine.x', 'backbones.models',
                                       'backbones.models.y']]


def test_architectures_live_in_models_and_all_register():
    """Every backbone class is defined under backbones/models/ and importing the package
    registers each into mmdet's and mmseg's MODELS; the top level holds no architecture."""
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG

    import backbones  # noqa: F401
    from backbones.models import backbone_classes
    classes = backbone_classes()
    assert classes
    for name, cls in classes.items():
        assert cls.__module__.startswith('backbones.models.'), (name, cls.__module__)
        assert DET.get(name) is cls and SEG.get(name) is cls, name
    top = sorted(f for f in os.listdir(PACKAGE) if f.endswith('.py'))
    assert top == ['__init__.py', 'metadata.py'], top
