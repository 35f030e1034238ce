import ArgumentParser
import EnvCache
import EnvFS
import EnvFormat
import EnvStore
import Foundation
import FuseKit
import Glibc
import SysKit

struct Mount: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mount an environment from a store.",
        discussion: """
            Returns once the mount answers; a daemon keeps serving it in the background (its log: \
            --log-file). With --foreground the command serves until unmounted or sent SIGTERM/SIGINT.
            """)

    @Argument(help: "The store: a directory, file:///dir, s3://bucket/prefix, or http(s)://…")
    var store: String

    @Argument(help: "The directory to mount on (default: the path the environment was published from, created if missing). Any other path works too: files that name the source path are presented with this path instead.")
    var mountpoint: String?

    @Option(help: "Environment to mount (may be left out when the store holds one).")
    var env: String?

    @Option(help: "Chunk cache directory, shared by all mounts (default: ~/.cache/envmount, /var/cache/envmount for root).")
    var cacheDir: String?

    @Option(help: "Most disk space for cached chunks, e.g. 20G or 500M; least recently used chunks are evicted (default: no limit; a full disk still evicts).")
    var cacheSize: String?

    @Flag(help: "Stay attached and serve in this process (for systemd and debugging).")
    var foreground = false

    @Option(help: "Daemon log file (default: CACHE_DIR/logs/ENV.log).")
    var logFile: String?

    @OptionGroup var storeArguments: StoreArguments

    @Option(help: "Kernel read-ahead and largest FUSE read in KiB.")
    var readAheadKb: Int = 1024

    @Option(help: "Seconds the kernel caches names and attributes (the tree never changes).")
    var kernelCacheTimeout: Double = 86400

    @Flag(help: "Do not let the kernel keep file pages between opens (for measurements).")
    var noKeepCache = false

    @Flag(help: "Copy cached bytes through user space instead of splicing them (for measurements).")
    var noSplice = false

    @Flag(help: "Answer OPEN/OPENDIR (the kernel otherwise skips them after the first ENOSYS; for measurements).")
    var withOpen = false

    @Option(help: "Chunks fetched in parallel in the background (read-ahead, warm, prefetch).")
    var fetchThreads: Int = 16

    @Option(help: "Most chunks a sequential reader fetches ahead of itself (0: no read-ahead).")
    var readAheadChunks: Int = 16

    @Option(help: "Chunks of the path-ordered stream fetched after each chunk a reader misses (default: 32 for remote stores, 0 for a directory, which has no latency to hide; off while a profile is prefetched).")
    var streamReadAhead: Int?

    @Option(help: "Start fetching this recorded profile in the background once mounted (see `envmount profile save`).")
    var prefetch: String?

    @Flag(help: "Present every file exactly as published, even when mounted at another path than the source path.")
    var noRelocate = false

    @Flag(help: "Log every FUSE request (libfuse's debug output; with --foreground).")
    var fuseDebug = false

    @Flag(help: .private)
    var daemonChild = false

    @Option(help: .private)
    var resolvedManifest: String?

    @Flag(help: .private)
    var resolvedOffline = false

    func validate() throws {
        if let e = env, !Ref.isValidEnvName(e) { throw ValidationError("invalid environment name '\(e)'") }
        guard (1...256).contains(fetchThreads) else { throw ValidationError("--fetch-threads must be 1...256") }
        guard (0...256).contains(streamReadAhead ?? 0) else { throw ValidationError("--stream-read-ahead must be 0...256") }
        guard (0...256).contains(readAheadChunks) else { throw ValidationError("--read-ahead-chunks must be 0...256") }
        guard readAheadKb >= 4 && readAheadKb <= 16384 else { throw ValidationError("--read-ahead-kb must be 4...16384") }
    }

    func run() throws {
        ProcessControl.ignoreSIGPIPE()
        if daemonChild { ProcessControl.newSession() }
        do {
            // mountinfo names mount points by their resolved path; a stale mount cannot be resolved.
            var mp = try mountpoint.map { m -> String in
                let given = Mountpoints.absolute(m)
                return try prepareMountpoint((try? FS.realpath(given)) ?? given)
            }
            let cacheDirectory = Mountpoints.absolute(cacheDir ?? ChunkCache.defaultDirectory())
            let limit = try cacheSize.map { s -> UInt64 in
                let v = try ByteSize.parse(s)
                guard v > 0 else { throw MountError("--cache-size must be more than 0") }
                return v
            }
            let cache = try ChunkCache(directory: cacheDirectory, limit: limit)
            let storeSpec = Self.absoluteStoreSpec(store)
            let s = try StoreFactory.open(storeSpec, options: storeArguments.options)
            let resolver = EnvironmentResolver(store: s, cache: cache)
            let opened: OpenedEnvironment
            if daemonChild, let m = resolvedManifest.flatMap(ChunkID.init(hex:)), let e = env {
                opened = try resolver.resolved(env: e, manifest: m, offline: resolvedOffline)
            } else {
                opened = try resolver.resolve(env: env)
            }
            if mp == nil { mp = try defaultMountpoint(opened.manifest) }
            let log = logFile.map(Mountpoints.absolute) ?? "\(cacheDirectory)/logs/\(opened.env).log"
            if !daemonChild { reportRelocation(opened.manifest, mountpoint: mp!) }
            if let p = prefetch, !daemonChild {
                let key = Profile.objectKey(env: opened.env, manifest: opened.ref.manifest, name: p)
                if !((try? s.exists(key)) ?? false) {
                    throw MountError("no profile '\(p)' for \(opened.env) revision \(opened.ref.revision) in \(s.description) (record one with `envmount profile save`)")
                }
            }
            if foreground {
                try serve(mp: mp!, store: s, cache: cache, opened: opened, log: log)
            } else {
                try spawnDaemon(mp: mp!, storeSpec: storeSpec, cacheDirectory: cacheDirectory, opened: opened, log: log)
            }
        } catch let e as ExitCode {
            throw e
        } catch {
            Console.error("envmount: \(error)")
            throw ExitCode.failure
        }
    }

    /// A mount point must be an existing directory that nothing is mounted on. A stale FUSE
    /// mount (its daemon was killed: "Transport endpoint is not connected") is detached first.
    func prepareMountpoint(_ mp: String) throws -> String {
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

    static func absoluteStoreSpec(_ s: String) -> String {
        s.contains("://") ? s : Mountpoints.absolute(s)
    }

    /// Starts `envmount mount --foreground` as a daemon in its own session and waits until it
    /// says the mount answers, relaying its error if it fails first.
    func spawnDaemon(mp: String, storeSpec: String, cacheDirectory: String, opened: OpenedEnvironment, log: String) throws {
        var args = ["mount", storeSpec, mp, "--env", opened.env, "--cache-dir", cacheDirectory, "--log-file", log,
                    "--foreground", "--daemon-child", "--resolved-manifest", opened.ref.manifest.hex, "--timeout", "\(storeArguments.timeout)",
                    "--read-ahead-kb", "\(readAheadKb)", "--fetch-threads", "\(fetchThreads)",
                    "--read-ahead-chunks", "\(readAheadChunks)", "--kernel-cache-timeout", "\(kernelCacheTimeout)"]
        if let e = storeArguments.endpoint { args += ["--endpoint", e] }
        if let r = storeArguments.region { args += ["--region", r] }
        for m in storeArguments.mirrors { args += ["--mirror", m] }
        if opened.offline { args.append("--resolved-offline") }
        if let w = streamReadAhead { args += ["--stream-read-ahead", "\(w)"] }
        if let p = prefetch { args += ["--prefetch", p] }
        if let c = cacheSize { args += ["--cache-size", c] }
        if noKeepCache { args.append("--no-keep-cache") }
        if noSplice { args.append("--no-splice") }
        if withOpen { args.append("--with-open") }
        if noRelocate { args.append("--no-relocate") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: String(decoding: try FS.readlink("/proc/self/exe".pathBytes), as: UTF8.self))
        p.arguments = args
        p.standardInput = FileHandle.nullDevice
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let pid = p.processIdentifier
        // The daemon writes "READY" once statfs on the mount point answers.
        var seen = Data()
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            let d = out.fileHandleForReading.availableData
            if d.isEmpty { break }
            seen.append(d)
            if String(decoding: seen, as: UTF8.self).contains("READY") {
                Console.out("mounted \(opened.env) revision \(opened.ref.revision) at \(mp) (\(opened.manifestSummary); pid \(pid), log \(log))")
                return
            }
        }
        if p.isRunning { kill(pid, SIGTERM) }
        let msg = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        throw MountError(msg.isEmpty ? "the mount daemon exited before the mount answered (see \(log))"
                                     : msg.replacingOccurrences(of: "envmount: ", with: ""))
    }

    /// Serves the mount in this process until it is unmounted or signalled.
    func serve(mp: String, store: any ObjectStore, cache: ChunkCache, opened: OpenedEnvironment, log: String) throws {
        let manifest = opened.manifest
        let fetcher = ChunkFetcher(store: store, cache: cache, manifest: manifest,
                                   describe: { [manifest] chunk in Self.describeChunk(manifest, chunk) })
        let pool = FetchPool(fetcher: fetcher, manifest: manifest, threads: fetchThreads)
        let streamWindow = streamReadAhead ?? (store is DirectoryStore ? 0 : 32)
        fetcher.onDemandMiss { [pool] k in pool.streamReadAhead(after: k, window: streamWindow) }
        var ra = ReadAheadConfig()
        ra.maxChunks = readAheadChunks
        ra.initialChunks = min(2, readAheadChunks)
        let recorder = AccessRecorder(chunkCount: manifest.chunks.count)
        let relocated = noRelocate ? nil : RelocatedFiles.make(manifest: manifest, mountpoint: mp.pathBytes)
        let fs = EnvFilesystem(manifest: manifest, fetcher: fetcher, pool: pool, readAhead: readAheadChunks > 0 ? ra : nil,
                               relocated: relocated, onChunkRead: { recorder.record($0) })
        let service = MountService(mountpoint: mp, opened: opened, store: store, cache: cache, fs: fs,
                                   fetcher: fetcher, pool: pool, recorder: recorder)
        var config = FuseConfig()
        config.readAheadKB = readAheadKb
        config.entryTimeout = kernelCacheTimeout
        config.attrTimeout = kernelCacheTimeout
        config.keepCache = !noKeepCache
        config.splice = !noSplice
        config.zeroMessageOpen = !withOpen
        var options = ["ro", "default_permissions", "fsname=envmount:\(opened.env)", "subtype=envmount"]
        if ProcessControl.userID == 0 { options.append("allow_other") }
        if fuseDebug { options.append("debug") }
        let session = try FuseSession(fs: FuseBridge(fs), mountpoint: mp, options: options, config: config)
        let daemonChild = self.daemonChild
        let env = opened.env, revision = opened.ref.revision
        let prefetch = self.prefetch
        let noRelocate = self.noRelocate
        let rc = session.run(onReady: {
            do { try service.startControlSocket() } catch {
                Log.error("control socket unavailable (status, warm and profile will not reach this mount): \(error)")
            }
            if daemonChild {
                Console.out("READY")
                if let parent = try? FS.makeDirectories(String(log[..<log.lastIndex(of: "/")!])) { _ = parent }
                if let fd = try? FileDescriptor.open(log, O_WRONLY | O_CREAT | O_APPEND, mode: 0o644) {
                    try? fd.dup2(to: 1)
                    try? fd.dup2(to: 2)
                    fd.close()
                }
            } else {
                Console.error("envmount: serving \(env) revision \(revision) at \(mp); unmount or Ctrl-C to stop")
            }
            Log.info("mounted \(env) revision \(revision) at \(mp), pid \(ProcessControl.pid)")
            for line in Self.relocationLines(manifest, relocated, noRelocate: noRelocate, listLimit: .max) { Log.info(line) }
            if let p = prefetch {
                do {
                    let job = try service.warmProfile(p)
                    Log.info("prefetching profile \(p): \(job.totalChunks) chunks, \(formatBytes(job.totalBytes))")
                } catch {
                    Log.error("cannot prefetch profile \(p): \(error)")
                }
            }
        })
        service.removeControlSocket()
        pool.stop()
        Log.info("unmounted \(mp): \(fetcher.stats.summary); peak RSS \(formatBytes(ProcessControl.peakResidentBytes()))")
        if rc != 0 && rc != -SIGTERM && rc != -SIGINT && rc != -SIGHUP { throw ExitCode(rc < 0 ? 1 : rc) }
    }

    /// "chunk <n> of <path>" for log lines, found by a scan only when something went wrong.
    static func describeChunk(_ m: Manifest, _ chunk: UInt32) -> String {
        for (i, e) in m.entries.enumerated() where e.kind == .regular && e.owner == UInt32(i) {
            for s in m.fileSpans(i) where m.spans[s].chunk == chunk {
                return "used by /\(String(decoding: m.path(i), as: UTF8.self))"
            }
        }
        return "chunk #\(chunk)"
    }
}

struct MountError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
