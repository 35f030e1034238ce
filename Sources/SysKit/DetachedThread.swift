import CKernels
import Glibc

/// Long-lived worker threads (fetch pool, FUSE ready waiter, control server, watchers) as plain
/// detached POSIX threads, so the binaries need no Foundation `Thread` (Foundation pulls in ICU,
/// ~45 MB of a static envmount, paged in on every cold start).
public enum DetachedThread {
    /// The kernel keeps 15 bytes of a thread's name (`comm`, as `top -H` and perf show it).
    public static let maxNameBytes = 15

    private final class Start: Sendable {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) { self.name = name; self.body = body }
    }

    /// The signals that stop a daemon: blocked in every detached thread, so the kernel delivers
    /// them to a thread that can act on them (the FUSE loop's, where libfuse's handler ends the
    /// loop). A SIGTERM that landed on a fetch or control thread set libfuse's exit flag while
    /// the loop slept on, and the daemon stayed until the next request.
    public static let stopSignals: [Int32] = [SIGTERM, SIGINT, SIGHUP]

    /// Starts a detached thread named `name` (cut to 15 bytes) that runs `body` and then ends.
    /// Like Foundation's `Thread`: default stack size, not joinable; a thread that cannot be
    /// created stops the process, since a daemon without its workers would hang instead. The
    /// thread starts with `stopSignals` blocked.
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) {
        // Blocked here around pthread_create, so the new thread inherits the mask from its first
        // instruction; this thread's own mask is put back right after.
        var block = sigset_t(), previous = sigset_t()
        sigemptyset(&block)
        for s in stopSignals { sigaddset(&block, s) }
        pthread_sigmask(SIG_BLOCK, &block, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        // SAFETY: the retained box is released exactly once, by the new thread, or below when the
        // thread could not be created.
        let box = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attr, { arg in
            // SAFETY: arg is the box retained by start(name:_:); this takes over that reference.
            let start = Unmanaged<Start>.fromOpaque(arg!).takeRetainedValue()
            _ = envmount_set_thread_name(String(decoding: start.name.utf8.prefix(DetachedThread.maxNameBytes), as: UTF8.self))
            start.body()
            return nil
        }, box)
        if rc != 0 {
            // SAFETY: no thread took the box over; release the reference passRetained made.
            Unmanaged<Start>.fromOpaque(box).release()
            fatalError("cannot start thread \(name): \(String(cString: strerror(rc)))")
        }
    }
}
