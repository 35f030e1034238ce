import CFuse
import Glibc
import Synchronization
import SysKit

/// Mount-time settings for the kernel's caches.
public struct FuseConfig: Sendable {
    /// Seconds the kernel may cache names, negative lookups and attributes (the tree is immutable).
    public var entryTimeout: Double = 86400
    public var attrTimeout: Double = 86400
    /// Kernel read-ahead and largest read, in KiB (written to the mount's bdi read_ahead_kb).
    public var readAheadKB: Int = 1024
    public var maxThreads: Int = 64
    /// Let the kernel keep file pages across opens.
    public var keepCache: Bool = true
    /// Reply to single-chunk reads by splicing the cache file.
    public var splice: Bool = true
    /// Answer OPEN and OPENDIR with ENOSYS: the kernel then stops sending OPEN/RELEASE and
    /// OPENDIR/RELEASEDIR for the mount and keeps file pages and listings cached ("zero-message
    /// open", Linux 5.1+). Writes are still refused by the read-only mount.
    public var zeroMessageOpen: Bool = true
    public init() {}
}

final class SessionContext: Sendable {
    let fs: any FuseFilesystem
    let config: FuseConfig
    let counters: FuseOpCounters
    /// The session's address while it exists, 0 once it is being destroyed: notifications sent
    /// from other threads hold this lock, so the session cannot go away under them.
    let liveSession = Mutex<UInt>(0)
    init(fs: any FuseFilesystem, config: FuseConfig, counters: FuseOpCounters) {
        self.fs = fs; self.config = config; self.counters = counters
    }

    static func from(_ req: fuse_req_t?) -> SessionContext {
        // SAFETY: userdata is the context retained in FuseSession.init and released in deinit,
        // which outlives every request.
        Unmanaged<SessionContext>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }
}

/// Set when the session loop has returned.
final class LoopFlag: Sendable {
    let done = Atomic<Bool>(false)
}

/// Why a kernel mount failed, in one line that says what to do.
public struct FuseMountError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Cause: Sendable, Equatable {
        /// /dev/fuse is absent or not the FUSE character device.
        case deviceMissing
        /// /dev/fuse exists but this user may not open it, or the mount point is not theirs.
        case permissionDenied
        /// A non-root mount needs the setuid fusermount3 helper.
        case fusermountMissing
        /// The kernel or fusermount3 refused the mount.
        case refused
        /// libfuse rejected the options or could not set up the session.
        case setup
    }
    public let cause: Cause
    public let description: String

    public init(_ cause: Cause, _ description: String) {
        self.cause = cause
        self.description = description
    }
}

/// Sends notifications to the kernel for a session, from any thread; once the session is gone
/// every call does nothing and says so.
public struct FuseNotifier: Sendable {
    let context: SessionContext

    /// Puts `length` bytes of `fd` at `offset` into the kernel's page cache as the contents of
    /// inode `ino` from its start (FUSE_NOTIFY_STORE), so that reads of them send no READ. The
    /// kernel must hold the inode already (after a LOOKUP or a READDIRPLUS that named it).
    /// Closes `fd`. Whether the kernel took the bytes.
    @discardableResult
    public func store(ino: UInt64, fd: Int32, offset: UInt64, length: Int) -> Bool {
        defer { Glibc.close(fd) }
        let rc: Int32 = context.liveSession.withLock { address in
            guard let se = OpaquePointer(bitPattern: address) else { return -ENOTCONN }
            return cfuse_notify_store_fd(se, ino, 0, fd, off_t(offset), length)
        }
        if rc == 0 { context.counters.countPush(length) }
        return rc == 0
    }
}

/// One mounted FUSE session: create, `run` (blocks until unmounted or signalled), done.
public final class FuseSession {
    let session: OpaquePointer
    let context: Unmanaged<SessionContext>
    public let mountpoint: String
    private var mounted = false
    private var handlersInstalled = false

    /// Creates the session and mounts it at `mountpoint` with the given `-o` options. Every
    /// failure after `fuse_session_new` leaves the cleanup to deinit, which runs for a throwing
    /// init once all stored properties are set, so the session is destroyed exactly once.
    public init(fs: any FuseFilesystem, mountpoint: String, options: [String], config: FuseConfig,
                counters: FuseOpCounters = FuseOpCounters()) throws {
        self.mountpoint = mountpoint
        try Self.preflight(mountpoint: mountpoint)
        let ctx = SessionContext(fs: fs, config: config, counters: counters)
        // SAFETY: retained here, released in deinit after the session is destroyed.
        let retained = Unmanaged.passRetained(ctx)
        var ops = FuseOps.make()
        let argStrings = ["envmount", "-o", options.joined(separator: ",")]
        let argv = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: argStrings.count + 1)
        defer {
            for i in 0..<argStrings.count { free(argv[i]) }
            argv.deallocate()
        }
        for (i, s) in argStrings.enumerated() { argv[i] = strdup(s) }
        argv[argStrings.count] = nil
        var args = fuse_args(argc: Int32(argStrings.count), argv: argv, allocated: 0)
        defer { fuse_opt_free_args(&args) }
        // SAFETY: `ops` is copied by fuse_session_new; the context pointer stays retained.
        let userdata = retained.toOpaque()
        guard let se = withUnsafePointer(to: &ops, { p in
            fuse_session_new(&args, p, MemoryLayout<fuse_lowlevel_ops>.size, userdata)
        }) else {
            retained.release()
            throw FuseMountError(.setup, "libfuse refused the mount options \(options.joined(separator: ","))")
        }
        session = se
        context = retained
        ctx.liveSession.withLock { $0 = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(se))) }
        guard fuse_set_signal_handlers(se) == 0 else {
            throw FuseMountError(.setup, "cannot install the FUSE signal handlers")
        }
        handlersInstalled = true
        let (rc, said) = Self.capturingStderr { fuse_session_mount(se, mountpoint) }
        guard rc == 0 else { throw Self.classify(mountpoint: mountpoint, libfuseSaid: said) }
        if !said.isEmpty { Console.write(2, said) }
        mounted = true
    }

    /// Notifications for this session, usable from any thread while it lives.
    public var notifier: FuseNotifier { FuseNotifier(context: context.takeUnretainedValue()) }

    deinit {
        context.takeUnretainedValue().liveSession.withLock { $0 = 0 }
        if mounted { fuse_session_unmount(session) }
        if handlersInstalled { fuse_remove_signal_handlers(session) }
        fuse_session_destroy(session)
        context.release()
    }

    /// The causes that can be named before trying: no FUSE device, no access to it, and no
    /// fusermount3 for a non-root user (root mounts with mount(2) directly).
    public static func preflight(mountpoint: String, device: String = "/dev/fuse", uid: UInt32 = getuid()) throws {
        let st: FileStat
        do { st = try FS.stat(device) } catch {
            throw FuseMountError(.deviceMissing, "\(device) is missing: run the container with --device \(device), or load the module on the host (modprobe fuse)")
        }
        guard st.kind == .charDevice else {
            throw FuseMountError(.deviceMissing, "\(device) is not the FUSE device: run the container with --device \(device), or load the module on the host (modprobe fuse)")
        }
        // fusermount3 opens the device with the user's own file-system uid, so a non-root user
        // needs read-write access to it as well (mode 0666 is the usual one).
        do { try FileDescriptor.open(device, O_RDWR | O_CLOEXEC).close() } catch let e as SystemError {
            switch e.errno {
            case EACCES, EPERM:
                throw FuseMountError(.permissionDenied, "permission denied opening \(device) (mode \(String(st.mode, radix: 8))): mount as root, or give users read-write access to it (chmod 0666 \(device), the usual mode)")
            case ENODEV, ENXIO:
                throw FuseMountError(.deviceMissing, "the FUSE kernel module is not loaded: modprobe fuse (in a container: on the host)")
            default:
                throw FuseMountError(.deviceMissing, "cannot open \(device): \(e.message)")
            }
        }
        if uid != 0 && fusermountPath() == nil {
            throw FuseMountError(.fusermountMissing, "fusermount3 is missing, and a non-root mount needs it: apt install fuse3")
        }
    }

    static func fusermountPath() -> String? {
        var dirs = ["/usr/bin", "/bin"]
        if let p = ProcessControl.environment("PATH") { dirs += p.split(separator: ":").map(String.init) }
        return dirs.map { $0 + "/fusermount3" }.first { (try? FS.stat($0))?.kind == .regular }
    }

    /// One line from what libfuse and fusermount3 wrote when the mount failed.
    static func classify(mountpoint: String, libfuseSaid: String) -> FuseMountError {
        let lines = libfuseSaid.split(separator: "\n").map { $0.trimmingWhitespace(newlines: false) }.filter { !$0.isEmpty }
        let said = lines.last ?? "no reason given"
        if said.contains("allow_other") {
            return FuseMountError(.refused, "fusermount3 refused allow_other: add user_allow_other to /etc/fuse.conf, or mount as root (\(said))")
        }
        if said.contains("Permission denied") || said.contains("no write access") || said.contains("not permitted") {
            return FuseMountError(.permissionDenied, "permission denied mounting at \(mountpoint): mount on a directory you own, or as root (\(said))")
        }
        if said.contains("fusermount") && (said.contains("No such file") || said.contains("not found")) && !said.contains(mountpoint) {
            return FuseMountError(.fusermountMissing, "fusermount3 is missing, and a non-root mount needs it: apt install fuse3 (\(said))")
        }
        return FuseMountError(.refused, "the kernel refused the FUSE mount at \(mountpoint): \(said)")
    }

    /// Runs `body` with file descriptor 2 redirected into an unlinked temporary file, and
    /// returns what was written there (libfuse and the fusermount3 it starts report mount
    /// errors on stderr). A file, not a pipe: fusermount3 with auto_unmount stays running with
    /// this descriptor, and a pipe would block the reader or give the helper SIGPIPE later.
    static func capturingStderr(_ body: () -> Int32) -> (Int32, String) {
        let path = "/tmp/envmount-fuse-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        guard let file = try? FileDescriptor.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o600) else { return (body(), "") }
        try? FS.unlink(path)
        defer { file.close() }
        let saved = dup(2)
        guard saved >= 0 else { return (body(), "") }
        dup2(file.rawValue, 2)
        let rc = body()
        dup2(saved, 2)
        close(saved)
        let said = (try? file.read(count: 1 << 16, offset: 0)) ?? []
        return (rc, String(decoding: said, as: UTF8.self))
    }

    /// Serves requests on up to `maxThreads` threads until unmounted or SIGTERM/SIGINT/SIGHUP.
    /// `onReady` runs once the mount answers a statfs; `beforeUnmount` runs after the loop ends,
    /// before the FUSE mount is taken down (to unmount what was mounted on top of it first).
    public func run(onReady: @escaping @Sendable () -> Void, beforeUnmount: () -> Void = {}) -> Int32 {
        let mp = mountpoint
        let readAhead = context.takeUnretainedValue().config.readAheadKB
        let loopDone = LoopFlag()
        DetachedThread.start(name: "em-fuse-ready") { [loopDone] in
            // statfs reaches this session's loop, so the FUSE magic means the mount answers.
            // Until it shows, nothing is reported ready; the caller's deadline covers a hang.
            var pause: UInt32 = 2_000
            while !loopDone.done.load(ordering: .relaxed) {
                if (try? FS.fileSystemType(mp)) == fuseSuperMagic {
                    FuseSession.setReadAhead(mountpoint: mp, kb: readAhead)
                    onReady()
                    return
                }
                usleep(pause)
                pause = min(pause * 2, 100_000)
            }
        }
        let cfg = fuse_loop_cfg_create()
        fuse_loop_cfg_set_max_threads(cfg, UInt32(context.takeUnretainedValue().config.maxThreads))
        fuse_loop_cfg_set_idle_threads(cfg, 16)
        fuse_loop_cfg_set_clone_fd(cfg, 0)
        let rc = fuse_session_loop_mt(session, cfg)
        loopDone.done.store(true, ordering: .relaxed)
        fuse_loop_cfg_destroy(cfg)
        beforeUnmount()
        fuse_session_unmount(session)
        mounted = false
        return rc
    }

    /// FUSE reads are capped by the mount's backing-device read-ahead (128 KiB by default);
    /// raising it gives 1 MiB requests. Best effort: needs root.
    static func setReadAhead(mountpoint: String, kb: Int) {
        guard let st = try? FS.stat(mountpoint) else { return }
        let dev = st.device
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
        let minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
        let path = "/sys/class/bdi/\(major):\(minor)/read_ahead_kb"
        if let fd = try? FileDescriptor.open(path, O_WRONLY) {
            try? fd.writeAll("\(kb)\n")
            fd.close()
        }
    }
}
