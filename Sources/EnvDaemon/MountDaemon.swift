// The mount lifecycle: check the mount point, open cache and store, resolve the environment,
// then serve it here (foreground) or in a daemon started by DaemonLauncher, which reports READY
// only once the kernel mount answers.
import EnvCache
import EnvFS
import EnvFormat
import EnvStore
import Foundation
import FuseKit
import Glibc
import SysKit

/// What the parent hands its daemon on stdin: the options, filled in, and the ref it resolved,
/// so the daemon serves exactly what the parent reported.
struct DaemonHandoff: Codable, Equatable {
    var options: MountOptions
    var manifest: String
    var offline: Bool
}

public enum MountDaemon {
    /// Seconds the parent waits for its daemon's READY.
    static let readyDeadline: Double = 120

    /// Mounts as `options` say: returns once the mount answers, a daemon serving it (or, with
    /// `foreground`, once it is unmounted or signalled).
    public static func mount(_ options: MountOptions, foreground: Bool) throws {
        ProcessControl.ignoreSIGPIPE()
        var o = options
        try o.validate()
        // mountinfo names mount points by their resolved path; a stale mount cannot be resolved.
        let given = Mountpoints.absolute(o.mountpoint)
        o.mountpoint = try prepareMountpoint((try? FS.realpath(given)) ?? given)
        o.store = o.store.contains("://") ? o.store : Mountpoints.absolute(o.store)
        o.cacheDir = Mountpoints.absolute(o.cacheDir ?? ChunkCache.defaultDirectory())
        let cache = try ChunkCache(directory: o.cacheDir!, limit: o.cacheSize)
        let store = try StoreFactory.open(o.store, options: o.storeOptions)
        let opened = try EnvironmentResolver(store: store, cache: cache).resolve(env: o.env)
        o.env = opened.env
        o.logFile = o.logFile.map(Mountpoints.absolute) ?? "\(o.cacheDir!)/logs/\(opened.env).log"
        if let p = o.prefetch {
            let key = Profile.objectKey(env: opened.env, manifest: opened.ref.manifest, name: p)
            if !((try? store.exists(key)) ?? false) {
                throw MountError("no profile '\(p)' for \(opened.env) revision \(opened.ref.revision) in \(store.description) (record one with `envmount profile save`)")
            }
        }
        // Refuse a hostile control-socket directory before anything is mounted.
        try ControlPaths.prepareDirectory()
        if foreground {
            try serve(o, store: store, cache: cache, opened: opened, daemonChild: false)
            return
        }
        let handoff = DaemonHandoff(options: o, manifest: opened.ref.manifest.hex, offline: opened.offline)
        let exe = String(decoding: try FS.readlink("/proc/self/exe".pathBytes), as: UTF8.self)
        let pid: Int32
        do {
            pid = try DaemonLauncher.launch(executable: exe, arguments: ["daemon"], input: Array(try JSONEncoder().encode(handoff)),
                                            deadline: readyDeadline)
        } catch let e as DaemonLauncher.Failed {
            // A daemon stopped by force leaves its mount behind, answering ENOTCONN.
            if let m = Mountpoints.find(o.mountpoint), m.fsType == "fuse.envmount" {
                _ = Mountpoints.fusermountUnmount(o.mountpoint, lazy: true)
            }
            throw MountError(e.description + " (log: \(o.logFile!))")
        }
        Console.out("mounted \(opened.env) revision \(opened.ref.revision) at \(o.mountpoint) (\(opened.manifestSummary); pid \(pid), log \(o.logFile!))")
    }

    /// The daemon: reads its DaemonHandoff from stdin and serves until unmounted.
    public static func runChild() throws {
        ProcessControl.ignoreSIGPIPE()
        ProcessControl.newSession()
        let stdin = FileDescriptor(rawValue: 0)
        let handoff = try JSONDecoder().decode(DaemonHandoff.self, from: Data(try stdin.readAll()))
        if let null = try? FileDescriptor.open("/dev/null", O_RDONLY) {
            try? null.dup2(to: 0)
            null.close()
        }
        let o = handoff.options
        guard let env = o.env, let cacheDir = o.cacheDir, let manifest = ChunkID(hex: handoff.manifest) else {
            throw MountError("incomplete daemon description on stdin")
        }
        let cache = try ChunkCache(directory: cacheDir, limit: o.cacheSize)
        let store = try StoreFactory.open(o.store, options: o.storeOptions)
        let opened = try EnvironmentResolver(store: store, cache: cache).resolved(env: env, manifest: manifest, offline: handoff.offline)
        try serve(o, store: store, cache: cache, opened: opened, daemonChild: true)
    }

    /// A mount point must be an existing directory that nothing is mounted on. A stale FUSE
    /// mount (its daemon was killed: "Transport endpoint is not connected") is detached first.
    static func prepareMountpoint(_ mp: String) throws -> String {
        if let m = Mountpoints.find(mp) {
            // statfs always reaches the daemon (stat may be answered from the kernel's cache),
            // so ENOTCONN here means the daemon is gone.
            do {
                _ = try FS.fileSystemType(mp)
                throw MountError("\(mp) is already a mount point (\(m.fsType) from \(m.source)); unmount it first")
            } catch let e as SystemError where e.errno == ENOTCONN && m.fsType.hasPrefix("fuse") {
                Console.error("envmount: \(mp) is a stale FUSE mount (its daemon is gone); detaching it")
                if let err = Mountpoints.fusermountUnmount(mp, lazy: true) {
                    do { try FS.lazyUnmount(mp) } catch { throw MountError("cannot detach stale mount \(mp): \(err)") }
                }
            }
        }
        let st: FileStat
        do { st = try FS.stat(mp) } catch let e as SystemError where e.errno == ENOENT {
            throw MountError("mount point \(mp) does not exist (create an empty directory first)")
        }
        guard st.kind == .directory else { throw MountError("mount point \(mp) is not a directory") }
        return mp
    }

    /// `-o` options for the kernel mount. `allow_other` (other users may read the tree) only
    /// where fusermount3 permits it: as root, or with `user_allow_other` in /etc/fuse.conf.
    static func fuseOptions(_ o: MountOptions, env: String, uid: UInt32 = ProcessControl.userID,
                            fuseConf: String = "/etc/fuse.conf") -> [String] {
        var options = ["ro", "default_permissions", "fsname=envmount:\(env)", "subtype=envmount"]
        if uid == 0 || userAllowOther(fuseConf) { options.append("allow_other") }
        if o.fuseDebug { options.append("debug") }
        return options
    }

    static func userAllowOther(_ path: String) -> Bool {
        guard let b = try? FS.readFile(path) else { return false }
        return String(decoding: b, as: UTF8.self).split(separator: "\n")
            .contains { $0.trimmingCharacters(in: .whitespaces) == "user_allow_other" }
    }

    /// Serves the mount in this process until it is unmounted or signalled.
    static func serve(_ o: MountOptions, store: any ObjectStore, cache: ChunkCache, opened: OpenedEnvironment,
                      daemonChild: Bool) throws {
        let mp = o.mountpoint
        let log = o.logFile ?? "\(cache.directory)/logs/\(opened.env).log"
        let manifest = opened.manifest
        let fetcher = ChunkFetcher(store: store, cache: cache, manifest: manifest,
                                   describe: { [manifest] chunk in describeChunk(manifest, chunk) })
        let pool = FetchPool(fetcher: fetcher, manifest: manifest, threads: o.fetchThreads)
        let streamWindow = o.streamReadAhead ?? (store is DirectoryStore ? 0 : 32)
        fetcher.onDemandMiss { [pool] k in pool.streamReadAhead(after: k, window: streamWindow) }
        var ra = ReadAheadConfig()
        ra.maxChunks = o.readAheadChunks
        ra.initialChunks = min(2, o.readAheadChunks)
        let recorder = AccessRecorder(chunkCount: manifest.chunks.count)
        let fs = EnvFilesystem(manifest: manifest, fetcher: fetcher, pool: pool, readAhead: o.readAheadChunks > 0 ? ra : nil,
                               onChunkRead: { recorder.record($0) })
        let service = MountService(mountpoint: mp, opened: opened, store: store, cache: cache, fs: fs,
                                   fetcher: fetcher, pool: pool, recorder: recorder)
        var config = FuseConfig()
        config.readAheadKB = o.readAheadKB
        config.entryTimeout = o.kernelCacheTimeout
        config.attrTimeout = o.kernelCacheTimeout
        config.keepCache = o.keepCache
        config.splice = o.splice
        config.zeroMessageOpen = o.zeroMessageOpen
        let session: FuseSession
        do {
            session = try FuseSession(fs: FuseBridge(fs), mountpoint: mp, options: fuseOptions(o, env: opened.env), config: config)
        } catch let e as FuseMountError {
            pool.stop()
            throw MountError(e.description)
        }
        let env = opened.env, revision = opened.ref.revision, prefetch = o.prefetch
        let rc = session.run(onReady: {
            do { try service.startControlSocket() } catch {
                Log.error("control socket unavailable (status, warm and profile will not reach this mount): \(error)")
            }
            if daemonChild {
                Console.out("READY")
                if let slash = log.lastIndex(of: "/") { try? FS.makeDirectories(String(log[..<slash])) }
                if let fd = try? FileDescriptor.open(log, O_WRONLY | O_CREAT | O_APPEND, mode: 0o644) {
                    try? fd.dup2(to: 1)
                    try? fd.dup2(to: 2)
                    fd.close()
                }
            } else {
                Console.error("envmount: serving \(env) revision \(revision) at \(mp); unmount or Ctrl-C to stop")
            }
            Log.info("mounted \(env) revision \(revision) at \(mp), pid \(ProcessControl.pid)")
            if let p = prefetch {
                do {
                    let job = try service.warmProfile(p)
                    Log.info("prefetching profile \(p): \(job.totalChunks) chunks, \(formatBytes(job.totalBytes))")
                } catch {
                    Log.error("cannot prefetch profile \(p): \(error)")
                }
            }
        })
        service.stopControlSocket()
        pool.stop()
        Log.info("unmounted \(mp): \(fetcher.stats.summary); peak RSS \(formatBytes(ProcessControl.peakResidentBytes()))")
        if rc != 0 && rc != -SIGTERM && rc != -SIGINT && rc != -SIGHUP { throw DaemonExit(rc < 0 ? 1 : rc) }
    }

    /// "used by /path" for log lines, found by a scan only when something went wrong.
    static func describeChunk(_ m: Manifest, _ chunk: UInt32) -> String {
        for (i, e) in m.entries.enumerated() where e.kind == .regular && e.owner == UInt32(i) {
            for s in m.fileSpans(i) where m.spans[s].chunk == chunk {
                return "used by /\(String(decoding: m.path(i), as: UTF8.self))"
            }
        }
        return "chunk #\(chunk)"
    }
}
