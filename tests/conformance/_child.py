"""Child process of the conformance runner: runs ONE test.test_asyncio module
on one loop and streams per-test results as JSON lines.

Started by run.py; not meant to be run by hand (but ``--probe`` is handy:
``python tests/conformance/_child.py --probe --factory uvloop:new_event_loop``).

Order matters: the loop factory is resolved and asyncio.new_event_loop is
swapped BEFORE the test module is imported, so modules that bind or call it
at import time or later all see the loop under test.
"""

import argparse
import collections
import faulthandler
import fnmatch
import importlib
import json
import os
import re
import sys
import threading
import time
import unittest
import warnings

PACKAGE = 'test.test_asyncio'
PREFIX = PACKAGE + '.'
TB_LIMIT = 8000
REASON_LIMIT = 160


# --------------------------------------------------------------------------
# Loop swap

def resolve(spec):
    """'module:attr.path' -> object."""
    modname, sep, attr = spec.partition(':')
    if not sep or not modname or not attr:
        raise ValueError(f"loop factory must be 'module:callable', got {spec!r}")
    obj = importlib.import_module(modname)
    for part in attr.split('.'):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f'{spec} is not callable')
    return obj


def type_name(obj):
    t = type(obj)
    return f'{t.__module__}.{t.__qualname__}'


class LoopSwap:
    """Makes asyncio.new_event_loop() return the loop under test and counts
    the loops it makes, and the asyncio loops made some other way."""

    def __init__(self, factory):
        self.factory = factory
        self.created = 0            # loops made by the factory
        self.other = 0              # asyncio BaseEventLoop made elsewhere
        self.types = collections.Counter()
        self._tls = threading.local()
        self.orig_new_event_loop = None
        self.on_new_type = None

    def make_loop(self):
        self._tls.depth = getattr(self._tls, 'depth', 0) + 1
        try:
            loop = self.factory()
        finally:
            self._tls.depth -= 1
        self.created += 1
        name = type_name(loop)
        if name not in self.types and self.on_new_type is not None:
            self.on_new_type(name)
        self.types[name] += 1
        return loop

    def install(self):
        import asyncio
        import asyncio.base_events
        import asyncio.events as events

        orig = self.orig_new_event_loop = events.new_event_loop
        default_new = events.BaseDefaultEventLoopPolicy.new_event_loop
        default_factory = asyncio.DefaultEventLoopPolicy._loop_factory
        swap = self

        def policy_is_default():
            policy = events._event_loop_policy
            if policy is None:
                return True
            # A policy the test installed that would still build asyncio's
            # default loop (e.g. a subclass overriding get_event_loop only)
            # counts as default; one with its own new_event_loop or loop
            # factory (test_runners' TestPolicy) is honoured, since the test
            # is about that policy.
            return (isinstance(policy, events.BaseDefaultEventLoopPolicy)
                    and type(policy).new_event_loop is default_new
                    and getattr(policy, '_loop_factory', None) is default_factory)

        def new_event_loop():
            if policy_is_default():
                return swap.make_loop()
            return orig()

        new_event_loop.__doc__ = orig.__doc__
        new_event_loop.__qualname__ = new_event_loop.__name__ = 'new_event_loop'
        new_event_loop.__module__ = orig.__module__
        events.new_event_loop = new_event_loop
        asyncio.new_event_loop = new_event_loop
        # asyncio.runners calls events.new_event_loop() at run time (no
        # reference of its own in 3.11); patch any module that might hold one.
        for modname in ('asyncio.runners', 'asyncio.unix_events'):
            m = sys.modules.get(modname)
            if m is not None and getattr(m, 'new_event_loop', None) is orig:
                m.new_event_loop = new_event_loop

        # Diagnostic only: count asyncio loops created outside the factory
        # (TestLoop, explicit SelectorEventLoop(), policy.new_event_loop()).
        base_init = asyncio.base_events.BaseEventLoop.__init__

        def __init__(loop, *args, **kwargs):
            if not getattr(swap._tls, 'depth', 0):
                swap.other += 1
            base_init(loop, *args, **kwargs)

        __init__.__wrapped__ = base_init
        asyncio.base_events.BaseEventLoop.__init__ = __init__


# --------------------------------------------------------------------------
# Results

_HOLDER_RE = re.compile(r'^(\w+) \((.+)\)$')


def short_id(test_or_id):
    tid = test_or_id if isinstance(test_or_id, str) else test_or_id.id()
    m = _HOLDER_RE.match(tid)
    if m:   # class/module fixture error: "setUpClass (pkg.mod.Class)"
        return f'{short_id(m.group(2))}.<{m.group(1)}>'
    return tid[len(PREFIX):] if tid.startswith(PREFIX) else tid


def summarize(err):
    exc_type, exc, _ = err
    name = getattr(exc_type, '__qualname__', str(exc_type))
    try:
        text = str(exc).strip()
    except Exception:
        text = ''
    line = text.splitlines()[0].strip() if text else ''
    if line:
        reason = f'{name}: {line}'
    else:
        # No message (e.g. a bare NotImplementedError): name the function
        # that raised it, which is what a reader of the list wants to know.
        tb = err[2]
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        reason = f'{name} in {tb.tb_frame.f_code.co_name}()' if tb is not None else name
    reason = ' '.join(reason.split())
    if len(reason) > REASON_LIMIT:
        reason = reason[:REASON_LIMIT - 3] + '...'
    return reason


class Sink:
    def __init__(self, path):
        self.pid = os.getpid()
        self.f = open(path, 'a', encoding='utf-8')
        self.lock = threading.Lock()

    def emit(self, **ev):
        if os.getpid() != self.pid:     # a forked child must not report
            return
        line = json.dumps(ev, ensure_ascii=False)
        with self.lock:
            self.f.write(line + '\n')
            self.f.flush()


class StreamingResult(unittest.TextTestResult):
    """TextTestResult (verbose, into the log) that also streams one JSON
    line per test: outcome in passed/failed/error/skipped (+ expected
    failure counted as passed, unexpected success as failed)."""

    def __init__(self, stream, sink, swap, test_timeout):
        super().__init__(stream, descriptions=False, verbosity=2)
        self.sink = sink
        self.swap = swap
        self.test_timeout = test_timeout
        self.cur = None

    # -- per test state
    def startTest(self, test):
        super().startTest(test)
        tid = short_id(test)
        self.cur = {'id': tid, 't0': time.monotonic(), 'error': None,
                    'failure': None, 'success': False, 'skip': None,
                    'xfail': False, 'xpass': False,
                    'c0': self.swap.created, 'o0': self.swap.other}
        self.sink.emit(ev='start', id=tid)
        if self.test_timeout:
            # Dump every thread's stack into the log shortly before the
            # parent gives up on this test.
            faulthandler.dump_traceback_later(max(1.0, self.test_timeout - 2),
                                              file=sys.__stderr__)

    def stopTest(self, test):
        if self.test_timeout:
            faulthandler.cancel_dump_traceback_later()
        c = self.cur
        self.cur = None
        if c is not None and c['id'] == short_id(test):
            if c['error']:
                outcome, info = 'error', c['error']
            elif c['failure']:
                outcome, info = 'failed', c['failure']
            elif c['xpass']:
                outcome, info = 'failed', ('unexpected success', None)
            elif c['success'] or c['xfail']:
                outcome, info = 'passed', (None, None)
            elif c['skip'] is not None:
                outcome, info = 'skipped', (c['skip'], None)
            else:
                outcome, info = 'error', ('no outcome recorded', None)
            self.sink.emit(ev='result', id=c['id'], outcome=outcome,
                           reason=info[0], tb=info[1],
                           duration=round(time.monotonic() - c['t0'], 3),
                           loops=self.swap.created - c['c0'],
                           other_loops=self.swap.other - c['o0'],
                           xfail=c['xfail'] or None)
        super().stopTest(test)

    def _record(self, test, kind, err):
        tb = self._exc_info_to_string(err, test)[:TB_LIMIT]
        reason = summarize(err)
        if isinstance(test, unittest.suite._ErrorHolder) or self.cur is None \
                or self.cur['id'] != short_id(getattr(test, 'test_case', test)):
            # fixture error outside a test (setUpClass, tearDownModule...)
            self.sink.emit(ev='result', id=short_id(test), outcome='error',
                           reason=reason, tb=tb, duration=0, loops=0,
                           other_loops=0, xfail=None)
            return
        if self.cur[kind] is None:
            self.cur[kind] = (reason, tb)

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, 'error', err)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, 'failure', err)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = 'failure' if issubclass(err[0], test.failureException) else 'error'
            self._record(test, kind, err)

    def addSuccess(self, test):
        super().addSuccess(test)
        if self.cur is not None:
            self.cur['success'] = True

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if self.cur is not None and self.cur['skip'] is None:
            self.cur['skip'] = str(reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        if self.cur is not None:
            self.cur['xfail'] = True

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        if self.cur is not None:
            self.cur['xpass'] = True


# --------------------------------------------------------------------------
# Suite construction

def iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from iter_tests(t)
        else:
            yield t


def build_suite(modname, module, swap):
    import adapters
    loader = unittest.TestLoader()
    tests = list(iter_tests(loader.loadTestsFromModule(module)))
    adapter = adapters.ADAPTERS.get(modname)
    if adapter is not None:
        keep, added = adapter(module, swap.make_loop)
        tests = [t for t in tests if keep(t)]
        for cls in added:
            setattr(module, cls.__name__, cls)
            tests.extend(iter_tests(loader.loadTestsFromTestCase(cls)))
    return tests


def matches(tid, patterns):
    for p in patterns:
        if not any(ch in p for ch in '*?['):
            p = f'*{p}*'
        if fnmatch.fnmatchcase(tid, p):
            return True
    return False


# --------------------------------------------------------------------------

def probe(spec):
    """Show which loop each entry point hands out once the hook is in."""
    swap = LoopSwap(resolve(spec))
    swap.install()
    import asyncio
    out = {'factory': spec}
    loop = asyncio.new_event_loop()
    out['asyncio.new_event_loop()'] = type_name(loop)
    loop.close()

    async def running():
        return type_name(asyncio.get_running_loop())

    out['asyncio.run()'] = asyncio.run(running())
    import test.test_asyncio.test_events as te
    import adapters
    _, classes = adapters.adapt_test_events(te, swap.make_loop)
    loop = classes[0].create_event_loop(None)
    out['test_events.EventLoopTests.create_event_loop()'] = type_name(loop)
    loop.close()
    out['loops created by factory'] = swap.created
    out['other asyncio loops'] = swap.other
    print(json.dumps(out, indent=2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--module')
    ap.add_argument('--factory', required=True)
    ap.add_argument('--events')
    ap.add_argument('--skip-file')
    ap.add_argument('--test-timeout', type=float, default=0)
    ap.add_argument('-k', dest='patterns', action='append', default=[])
    ap.add_argument('--probe', action='store_true')
    args = ap.parse_args()

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    faulthandler.enable(file=sys.__stderr__, all_threads=True)
    if args.probe:
        probe(args.factory)
        sys.stdout.flush()
        os._exit(0)     # what the loop leaves behind at exit is the real run's business

    sink = Sink(args.events)
    module_id = f'{args.module}.<module>'
    try:
        swap = LoopSwap(resolve(args.factory))
        swap.on_new_type = lambda name: sink.emit(ev='loop_type', type=name)
        swap.install()
    except BaseException as e:
        import traceback
        sink.emit(ev='result', id=module_id, outcome='error',
                  reason=f'cannot load loop factory {args.factory}: {summarize(sys.exc_info())}',
                  tb=traceback.format_exc()[:TB_LIMIT], duration=0, loops=0,
                  other_loops=0, xfail=None)
        return 3

    skip = set()
    if args.skip_file:
        with open(args.skip_file, encoding='utf-8') as f:
            skip = set(json.load(f))

    try:
        module = importlib.import_module(PREFIX + args.module)
        tests = build_suite(args.module, module, swap)
    except BaseException as e:
        import traceback
        sink.emit(ev='result', id=module_id, outcome='error',
                  reason=f'import/load failed: {summarize(sys.exc_info())}',
                  tb=traceback.format_exc()[:TB_LIMIT], duration=0, loops=0,
                  other_loops=0, xfail=None)
        return 0

    tests = [t for t in tests if short_id(t) not in skip
             and (not args.patterns or matches(short_id(t), args.patterns))]
    sink.emit(ev='plan', count=len(tests))

    result = StreamingResult(unittest.runner._WritelnDecorator(sys.stderr),
                             sink, swap, args.test_timeout)
    suite = unittest.TestSuite(tests)
    with warnings.catch_warnings():
        if not sys.warnoptions:
            warnings.simplefilter('default')
        t0 = time.monotonic()
        suite(result)
    result.printErrors()
    sink.emit(ev='done', created=swap.created, other=swap.other,
              types=dict(swap.types), duration=round(time.monotonic() - t0, 3))
    sys.stderr.write(f'\n[conformance] {args.module}: loop factory {args.factory} '
                     f'made {swap.created} loops {dict(swap.types)}; '
                     f'{swap.other} other asyncio loops\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
