"""Write it yourself: library functions a student's function may not call while it is checked.

An exercise that asks a student to implement something the library already has (a
stable softmax, attention under a mask or a window, the merge of two partial results)
declares, next to its task, which library functions the student's function may not
call, with :func:`attnkit.grading.forbid`::

    forbid("masked_attention", "attnkit.attention", "attnkit.engines",
           "torch.nn.functional.scaled_dot_product_attention")

While that function runs under :func:`guard`, a call of one of those names from code
that is not the library's own (the student's cells, or files the student wrote) raises
:class:`ForbiddenCall`, whose message says what was called and why it is refused. A
name is a function (``attnkit.attention``; any alias of the same function is caught,
since the guard compares the code that runs, not the name it was called by), a C
function (``torch.nn.functional.scaled_dot_product_attention``, compared by identity)
or a module or package (``attnkit.engines``: every function defined in it). Library
code may still call them: ``partial_attention``, which a ring exercise allows, may use
the attention engine inside.

The guard is a profile function (:func:`sys.setprofile`) installed for the duration of
the call, chained to any profile function already installed. It records the first
refused call; if the student's code catches the exception, the call still fails when
the guard ends. It is a check of honest work, not a security boundary: code written to
defeat it (switching the profile function off, running the library's code from a
disguised file name, a thread) can, and the grader's sandbox is what contains such code.

The same source, :data:`GUARD`, runs in two places: here, for the public checks a
student runs in Jupyter (:func:`attnkit.grading.forbid` wraps the student's function),
and in the student's kernel during grading, sent fresh with every call of a student's
function (see :meth:`attnkit.grading._kernel.KernelSession.call`), so that nothing the
student's code did to the kernel's copy of attnkit changes it.

>>> import attnkit, numpy as np
>>> def lazy_softmax(x):
...     return attnkit.softmax(x)
>>> with guard("lazy_softmax", ["attnkit.softmax"]):  # doctest: +ELLIPSIS
...     lazy_softmax(np.zeros(2))
Traceback (most recent call last):
    ...
attnkit.grading._guard.ForbiddenCall: lazy_softmax called attnkit.softmax: this exercise asks ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["GUARD", "GUARD_NAMES", "ForbiddenCall", "guard", "guarded"]

#: The guard's source. It defines ``_attnkit_ForbiddenCall`` (an exception class named
#: ``ForbiddenCall``) and ``_attnkit_guard(function, names)``, a context manager.
GUARD = r'''
_attnkit_ForbiddenCall = type("ForbiddenCall", (BaseException,), {
    "__doc__": "A function under test called a library function that its exercise asks "
               "the student to write. A BaseException, so that `except Exception` in the "
               "student's code does not swallow it.",
    "__module__": "attnkit.grading._guard"})


def _attnkit_guard(function, names):
    import contextlib, os, sys, sysconfig, types

    names = tuple(str(n) for n in names)
    roots = set()
    attnkit = sys.modules.get("attnkit")
    if attnkit is not None and getattr(attnkit, "__file__", None):
        roots.add(os.path.dirname(os.path.abspath(attnkit.__file__)))
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        roots.add(os.path.abspath(p))
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            roots.add(os.path.abspath(sysconfig.get_paths()[key]))
        except KeyError:
            pass
    roots = tuple(sorted(r.rstrip(os.sep) + os.sep for r in roots if r and r != os.sep))
    library_files = {}

    def library_module(name):
        mod = sys.modules.get(name) if isinstance(name, str) else None
        file = getattr(mod, "__file__", None)
        return bool(file) and os.path.abspath(file).startswith(roots)

    def library(frame):
        # the library's own code (and the interpreter's) may call anything. Code that a
        # library generates at run time (the __init__ of a dataclass, a namedtuple's
        # __new__) has no file of its own: it counts as the library's when it runs in a
        # library module's namespace, and otherwise as its caller's (so that the same
        # call is judged the same whichever cell created the object first).
        while frame is not None:
            name = frame.f_code.co_filename
            known = library_files.get(name)
            if known is None:
                path = os.path.abspath(name) if os.path.isabs(name) else name
                known = name.startswith("<frozen") or path.startswith(roots)
                if not known and name == "<string>":
                    known = "generated"
                library_files[name] = known
            if known != "generated":
                return known
            if library_module(frame.f_globals.get("__name__")):
                return True
            frame = frame.f_back
        return False                            # generated all the way up: the caller's

    codes, cfuncs, modules, methods = {}, {}, [], {}
    seen = [-1]

    def resolve():
        seen[0] = len(sys.modules)
        for name in names:
            obj = sys.modules.get(name)
            if obj is None:
                head, _, attr = name.rpartition(".")
                parent = sys.modules.get(head)
                if parent is None and head:
                    top, *rest = head.split(".")
                    parent = sys.modules.get(top)
                    for part in rest:
                        parent = getattr(parent, part, None) if parent is not None else None
                obj = getattr(parent, attr, None) if parent is not None else None
            if obj is None:
                continue                        # not imported yet: tried again later
            if isinstance(obj, types.ModuleType):
                if obj.__name__ not in [m for m, _ in modules]:
                    modules.append((obj.__name__, name))
                    # what the module exports, wherever it is defined (torch.func's
                    # functions live in torch._functorch, torch.special's in C)
                    public = getattr(obj, "__all__", None)
                    if not isinstance(public, (list, tuple)):
                        public = [a for a in vars(obj) if not a.startswith("_")]
                    for attr in public:
                        f = getattr(obj, str(attr), None)
                        if isinstance(f, (types.ModuleType, type)) or not callable(f):
                            continue
                        label = f"{name}.{attr}"
                        code = getattr(f, "__code__", None)
                        if code is not None:
                            codes.setdefault(code, label)
                        else:
                            cfuncs.setdefault(id(f), (f, label))
                continue
            if isinstance(obj, (types.MethodDescriptorType, types.WrapperDescriptorType)):
                methods.setdefault((obj.__objclass__, obj.__name__), name)
                continue
            for f in (obj, getattr(obj, "__wrapped__", None), getattr(obj, "__init__", None),
                      getattr(obj, "__call__", None) if not isinstance(obj, type) else None):
                code = getattr(f, "__code__", None)
                if code is not None:
                    codes.setdefault(code, name)
            if getattr(obj, "__code__", None) is None and callable(obj) \
                    and not isinstance(obj, type):
                cfuncs.setdefault(id(obj), (obj, name))

    def in_modules(mod):
        for m, label in modules:
            if mod == m or mod.startswith(m + "."):
                return label
        return None

    def c_hit(arg):
        # a C function of a forbidden module (torch.exp when "torch" is forbidden), or a
        # method of a forbidden module's objects or a forbidden method (t.softmax(0))
        owner = getattr(arg, "__self__", None)
        if owner is not None and not isinstance(owner, types.ModuleType):
            cls = type(owner)
            for (objclass, meth), label in methods.items():
                if meth == getattr(arg, "__name__", None) and isinstance(owner, objclass):
                    return label
            label = in_modules(getattr(cls, "__module__", "") or "")
            if label is not None:
                return f"{cls.__module__}.{cls.__name__}.{getattr(arg, '__name__', '?')}"
            return None
        mod = getattr(arg, "__module__", None)
        if isinstance(mod, str) and in_modules(mod) is not None:
            return f"{mod}.{getattr(arg, '__name__', '?')}"
        return None

    state = {"violation": None}

    def refuse(hit):
        if state["violation"] is None:
            state["violation"] = (
                f"{function} called {hit}: this exercise asks you to write it yourself, "
                f"so {hit} is not available inside {function}")
        raise _attnkit_ForbiddenCall(state["violation"])

    chained = [None]

    def profile(frame, event, arg):
        if event == "call":
            if len(sys.modules) != seen[0]:
                resolve()
            hit = codes.get(frame.f_code)
            if hit is None and modules:
                mod = frame.f_globals.get("__name__") or ""
                if any(mod == m or mod.startswith(m + ".") for m, _ in modules):
                    hit = f"{mod}.{frame.f_code.co_name}"
            if hit is not None and not library(frame.f_back):
                refuse(hit)
        elif event == "c_call":
            if len(sys.modules) != seen[0]:
                resolve()
            hit = cfuncs.get(id(arg))
            hit = hit[1] if hit is not None and hit[0] is arg else None
            if hit is None and (modules or methods):
                hit = c_hit(arg)
            if hit is not None and not library(frame):
                refuse(hit)
        if chained[0] is not None:
            chained[0](frame, event, arg)

    @contextlib.contextmanager
    def active():
        resolve()
        previous = sys.getprofile()
        chained[0] = previous
        sys.setprofile(profile)
        try:
            yield state
        except _attnkit_ForbiddenCall:
            raise
        except BaseException as exc:
            if state["violation"] is not None:
                raise _attnkit_ForbiddenCall(state["violation"]) from exc
            raise
        finally:
            sys.setprofile(previous)
        if state["violation"] is not None:     # the student's code caught the exception
            raise _attnkit_ForbiddenCall(state["violation"])

    return active()
'''

#: The names :data:`GUARD` defines (deleted again after each request in a kernel).
GUARD_NAMES = ("_attnkit_ForbiddenCall", "_attnkit_guard")

_ns: dict[str, Any] = {"__name__": __name__}
exec(compile(GUARD, "<attnkit guard>", "exec"), _ns)  # noqa: S102 - our own source

#: Raised when a function under test calls a forbidden library function.
ForbiddenCall: type[BaseException] = _ns["_attnkit_ForbiddenCall"]


def guard(function: str, names: Sequence[str]) -> Any:
    """A context manager: while it is active, ``names`` are refused to non-library code.

    Args:
        function: the name of the student's function under test (for the message).
        names: dotted names of functions, C functions or modules (see the module
            docstring); names whose module is not imported are resolved once it is.

    Raises:
        ForbiddenCall: when the block called one of ``names`` from code outside the
            library (also at the end of the block, if that code caught the exception).
    """
    return _ns["_attnkit_guard"](function, names)


def guarded(fn: Callable[..., Any], function: str, names: Sequence[str]) -> Callable[..., Any]:
    """``fn`` wrapped so that every call runs under :func:`guard`.

    The wrapper keeps ``fn``'s name and docstring and is marked (``__attnkit_guarded__``)
    so that it is not wrapped twice.

    Example:
        >>> import numpy as np
        >>> def own_softmax(x):
        ...     e = np.exp(x - x.max())
        ...     return e / e.sum()
        >>> guarded(own_softmax, "own_softmax", ["attnkit.softmax"])(np.zeros(2))
        array([0.5, 0.5])
    """
    names = tuple(names)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with guard(function, names):
            return fn(*args, **kwargs)

    wrapper.__attnkit_guarded__ = True  # type: ignore[attr-defined]
    return wrapper
