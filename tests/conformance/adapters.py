"""Per-module adapters: put the loop under test into CPython's asyncio tests.

Most modules of ``test.test_asyncio`` get their loops from
``asyncio.new_event_loop()`` (directly, through ``asyncio.run`` /
``asyncio.Runner``, or through ``unittest.IsolatedAsyncioTestCase``); the hook
in ``_child.py`` swaps that function, so those modules need no adapter.

The modules below instead define concrete test classes that build asyncio's
own ``SelectorEventLoop`` (or go through ``policy.new_event_loop()``).  For
them an adapter:

* excludes those concrete classes from the run, and
* adds one class built from the suite's own mixin (or, where the concrete
  class adds test methods of its own, a subclass of it) whose loop-creating
  method returns the loop under test.

The same adapter runs on both sides (asyncio's loop and the loop under test),
so test ids are identical on both sides and can be compared one to one.

An adapter is ``adapt(module, make_loop) -> (keep, added_classes)`` where
``keep(test) -> bool`` filters the module's own tests.
"""

import sys


def _cls(module, name, bases, attrs):
    """Create a TestCase class that reports itself as part of ``module``
    (so its test ids read ``test_x.Name.test_y``)."""
    if hasattr(module, name):
        raise RuntimeError(f"adapter: {module.__name__} already has {name!r}")
    cls = type(name, bases, dict(attrs))
    cls.__module__ = module.__name__
    cls.__qualname__ = name
    return cls


def _need(module, *names):
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        raise RuntimeError(
            f"adapter: {module.__name__} has no {', '.join(missing)} "
            f"(Python {sys.version.split()[0]}); update tests/conformance/adapters.py")
    return [getattr(module, n) for n in names]


def _present(module, *names):
    return {getattr(module, n) for n in names if hasattr(module, n)}


def _exclude_classes(classes):
    classes = frozenset(classes)
    return lambda test: type(test) not in classes


def _utils():
    from test.test_asyncio import utils
    return utils


# Concrete classes building asyncio's selector/proactor loops, per module.
_SELECTOR_CLASSES = ('SelectEventLoopTests', 'KqueueEventLoopTests',
                     'EPollEventLoopTests', 'PollEventLoopTests',
                     'ProactorEventLoopTests')


def adapt_test_events(mod, make_loop):
    # The Unix concrete classes also install asyncio's SafeChildWatcher
    # (UnixEventLoopTestsMixin); that is asyncio plumbing, not loop
    # behaviour, so the new class uses the two behaviour mixins only.
    loop_mixin, sub_mixin = _need(mod, 'EventLoopTestsMixin', 'SubprocessTestsMixin')
    cls = _cls(mod, 'EventLoopTests',
               (loop_mixin, sub_mixin, _utils().TestCase),
               {'create_event_loop': lambda self: make_loop()})
    return _exclude_classes(_present(mod, *_SELECTOR_CLASSES)), [cls]


def adapt_test_sock_lowlevel(mod, make_loop):
    (mixin,) = _need(mod, 'BaseSockTestsMixin')
    cls = _cls(mod, 'SockTests', (mixin, _utils().TestCase),
               {'create_event_loop': lambda self: make_loop()})
    return _exclude_classes(_present(mod, *_SELECTOR_CLASSES)), [cls]


def adapt_test_sendfile(mod, make_loop):
    (base,) = _need(mod, 'SendfileTestsBase')
    cls = _cls(mod, 'SendfileTests', (base, _utils().TestCase),
               {'create_event_loop': lambda self: make_loop()})
    return _exclude_classes(_present(mod, *_SELECTOR_CLASSES)), [cls]


def adapt_test_server(mod, make_loop):
    # SelectorStartServerTests adds Unix-socket tests of its own on top of
    # BaseStartServer, so subclass it rather than the bare mixin.
    (selector_cls,) = _need(mod, 'SelectorStartServerTests')
    cls = _cls(mod, 'StartServerTests', (selector_cls,),
               {'new_loop': lambda self: make_loop()})
    excluded = _present(mod, 'SelectorStartServerTests', 'ProactorStartServerTests')
    return _exclude_classes(excluded), [cls]


def adapt_test_buffered_proto(mod, make_loop):
    (base,) = _need(mod, 'BaseTestBufferedProtocol')
    import unittest
    cls = _cls(mod, 'BufferedProtocolTests', (base, unittest.TestCase),
               {'new_loop': lambda self: make_loop()})
    excluded = _present(mod, 'BufferedProtocolSelectorTests', 'BufferedProtocolProactorTests')
    return _exclude_classes(excluded), [cls]


def adapt_test_subprocess(mod, make_loop):
    # The Unix concrete classes (Subprocess*WatcherTests) create their loop
    # with policy.new_event_loop() and run SubprocessMixin once per asyncio
    # child watcher: that part tests asyncio's watcher classes.  They are
    # replaced by one class running SubprocessMixin on the loop under test,
    # with the watcher set-up of the Threaded variant (3.11's default
    # watcher; asyncio's loop needs one installed, since GenericWatcherTests
    # leaves a mock watcher behind; a native loop just ignores it).
    # SubprocessTransportTests (asyncio's base_subprocess on a TestLoop) and
    # GenericWatcherTests stay as they are.
    utils = _utils()
    if hasattr(mod, 'SubprocessThreadedWatcherTests'):
        (threaded,) = _need(mod, 'SubprocessThreadedWatcherTests')
        import asyncio
        import warnings

        def setUp(self):
            utils.TestCase.setUp(self)
            self.loop = make_loop()
            self.set_event_loop(self.loop)
            # 3.11 names the watcher class in Watcher; 3.12+ makes it in _get_watcher().
            if getattr(self, 'Watcher', None) is not None:
                watcher = self.Watcher()
            else:
                watcher = self._get_watcher()
            watcher.attach_loop(self.loop)
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', DeprecationWarning)
                asyncio.get_event_loop_policy().set_child_watcher(watcher)

        bases = (threaded,)
    else:   # no child watchers (Windows, or a Python without them)
        (mixin,) = _need(mod, 'SubprocessMixin')

        def setUp(self):
            utils.TestCase.setUp(self)
            self.loop = make_loop()
            self.set_event_loop(self.loop)

        bases = (mixin, utils.TestCase)
    cls = _cls(mod, 'SubprocessTests', bases, {'setUp': setUp})
    excluded = _present(mod, 'SubprocessThreadedWatcherTests',
                        'SubprocessMultiLoopWatcherTests',
                        'SubprocessSafeWatcherTests',
                        'SubprocessFastWatcherTests',
                        'SubprocessPidfdWatcherTests',
                        'SubprocessProactorTests')
    return _exclude_classes(excluded), [cls]


def adapt_test_sslproto(mod, make_loop):
    # test_sslproto is mostly about asyncio's SSLProtocol class
    # (SslProtoHandshakeTests drives it on asyncio's TestLoop: it never
    # touches the loop under test, it is kept only because it is cheap).
    # Its functional start_tls tests (BaseStartTLS) are loop behaviour and
    # run on the loop under test.
    (selector_cls,) = _need(mod, 'SelectorStartTLSTests')
    cls = _cls(mod, 'StartTLSTests', (selector_cls,),
               {'new_loop': lambda self: make_loop()})
    excluded = _present(mod, 'SelectorStartTLSTests', 'ProactorStartTLSTests')
    return _exclude_classes(excluded), [cls]


def adapt_test_unix_events(mod, make_loop):
    # test_unix_events is mostly about asyncio's own Unix classes (signal
    # plumbing with a mocked signal module, pipe transports on TestLoop,
    # child watchers, the policy).  Only two classes test public loop
    # behaviour and run here:
    #  * SelectorEventLoopUnixSocketTests (create_unix_server/connection
    #    argument checking), with its loop replaced; its test that patches
    #    asyncio.unix_events.socket is dropped (it mocks asyncio internals);
    #  * TestFunctional (already uses asyncio.new_event_loop()).
    unix_cls, functional = _need(mod, 'SelectorEventLoopUnixSocketTests', 'TestFunctional')
    utils = _utils()

    def setUp(self):
        utils.TestCase.setUp(self)
        self.loop = make_loop()
        self.set_event_loop(self.loop)

    cls = _cls(mod, 'UnixSocketTests', (unix_cls,), {'setUp': setUp})
    dropped_methods = {'test_create_unix_server_bind_error'}

    def keep(test):
        if type(test) is functional:
            return True
        if type(test) is cls:
            return test._testMethodName not in dropped_methods
        return False

    return keep, [cls]


ADAPTERS = {
    'test_events': adapt_test_events,
    'test_sock_lowlevel': adapt_test_sock_lowlevel,
    'test_sendfile': adapt_test_sendfile,
    'test_server': adapt_test_server,
    'test_buffered_proto': adapt_test_buffered_proto,
    'test_subprocess': adapt_test_subprocess,
    'test_sslproto': adapt_test_sslproto,
    'test_unix_events': adapt_test_unix_events,
}

# Modules not run at all: they test asyncio's own concrete classes
# (BaseEventLoop internals with mocks, the selector and proactor loops and
# transports, Windows-only code), so they say nothing about another loop.
EXCLUDED_MODULES = {
    'test_base_events': "asyncio's BaseEventLoop internals (mocked selectors, private methods)",
    'test_selector_events': "asyncio's selector loop and transports (private classes, mocks)",
    'test_proactor_events': "asyncio's proactor loop and transports (Windows design, mocks)",
    'test_windows_events': 'Windows only',
    'test_windows_utils': 'Windows only',
}
