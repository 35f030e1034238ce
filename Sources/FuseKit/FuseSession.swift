import CFuse
import Foundation
import Glibc
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
    init(fs: any FuseFilesystem, config: FuseConfig) { self.fs = fs; self.config = config }

    static func from(_ req: fuse_req_t?) -> SessionContext {
        // SAFETY: userdata is the context retained in FuseSession.init and released in deinit,
        // which outlives every request.
        Unmanaged<SessionContext>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }
}

public struct FuseMountError: Error, CustomStringConvertible {
    public let description: String
}

/// One mounted FUSE session: create, `run` (blocks until unmounted or signalled), done.
public final class FuseSession {
    let session: OpaquePointer
    let context: Unmanaged<SessionContext>
    public let mountpoint: String
    private var mounted = false

    /// Creates the session and mounts it at `mountpoint` with the given `-o` options.
    public init(fs: any FuseFilesystem, mountpoint: String, options: [String], config: FuseConfig) throws {
        self.mountpoint = mountpoint
        let ctx = SessionContext(fs: fs, config: config)
        // SAFETY: retained here, released in deinit after the session is destroyed.
        context = Unmanaged.passRetained(ctx)
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
        let userdata = context.toOpaque()
        guard let se = withUnsafePointer(to: &ops, { p in
            fuse_session_new(&args, p, MemoryLayout<fuse_lowlevel_ops>.size, userdata)
        }) else {
            Unmanaged<SessionContext>.fromOpaque(userdata).release()
            throw FuseMountError(description: "fuse_session_new failed (bad mount options \(options))")
        }
        session = se
        if fuse_set_signal_handlers(se) != 0 {
            fuse_session_destroy(se)
            context.release()
            throw FuseMountError(description: "cannot install signal handlers")
        }
        if fuse_session_mount(se, mountpoint) != 0 {
            fuse_remove_signal_handlers(se)
            fuse_session_destroy(se)
            context.release()
            throw FuseMountError(description: "cannot mount FUSE at \(mountpoint) (is /dev/fuse available and fusermount3 installed?)")
        }
        mounted = true
    }

    deinit {
        if mounted { fuse_session_unmount(session) }
        fuse_remove_signal_handlers(session)
        fuse_session_destroy(session)
        context.release()
    }

    /// Serves requests on up to `maxThreads` threads until unmounted or SIGTERM/SIGINT/SIGHUP.
    /// `onReady` runs once the mount answers a statfs; `beforeUnmount` runs after the loop ends,
    /// before the FUSE mount is taken down (to unmount what was mounted on top of it first).
    public func run(onReady: @escaping @Sendable () -> Void, beforeUnmount: () -> Void = {}) -> Int32 {
        let mp = mountpoint
        let readAhead = context.takeUnretainedValue().config.readAheadKB
        let waiter = Thread {
            for _ in 0..<600 {
                if (try? FS.fileSystemType(mp)) == fuseSuperMagic { break }
                usleep(10_000)
            }
            FuseSession.setReadAhead(mountpoint: mp, kb: readAhead)
            onReady()
        }
        waiter.start()
        let cfg = fuse_loop_cfg_create()
        fuse_loop_cfg_set_max_threads(cfg, UInt32(context.takeUnretainedValue().config.maxThreads))
        fuse_loop_cfg_set_idle_threads(cfg, 16)
        fuse_loop_cfg_set_clone_fd(cfg, 0)
        let rc = fuse_session_loop_mt(session, cfg)
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
