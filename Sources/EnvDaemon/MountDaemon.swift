// The mount lifecycle: check the mount point, open cache and store, resolve the environment,
// then serve it here (foreground) or in a daemon started by DaemonLauncher, which reports READY
// only once the kernel mount answers.
import EnvCache
import EnvFetch
import EnvFS
import EnvFormat
import EnvStore
import FoundationEssentials
import FuseKit
import Glibc
import Synchronization
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
        PhaseMarks.mark("mount: start")
        ProcessControl.ignoreSIGPIPE()
        var o = options
        try o.validate()
        // mountinfo names mount points by their resolved path; a stale mount cannot be resolved.
        if !o.mountpoint.isEmpty {
            let given = Mountpoints.absolute(o.mountpoint)
            o.mountpoint = try prepareMountpoint((try? FS.realpath(given)) ?? given)
        }
        o.store = o.store.contains("://") ? o.store : Mountpoints.absolute(o.store)
        o.cacheDir = Mountpoints.absolute(o.cacheDir ?? ChunkCache.defaultDirectory())
        if foreground {
            let (o, store, cache, opened) = try open(o)
            reportRelocation(opened.manifest, mountpoint: o.mountpoint, relocate: o.relocate)
            try serve(o, store: store, cache: cache, opened: opened, announce: .foreground)
            return
        }
        // The daemon is this process, forked before any thread exists (the cache's scan starts
        // one): it resolves the environment once and keeps the store's connections, where a
        // re-executed daemon paid a second process start and resolved it again.
        switch DaemonFork.forkDaemon() {
        case let .parent(child)?:
            try awaitForked(child, o)
        case let .child(ready)?:
            // Log lines before READY wait in memory: they go to the log, or with the error.
            Log.hold()
            do {
                let (o, store, cache, opened) = try open(o)
                try serve(o, store: store, cache: cache, opened: opened, announce: .forked(ready))
            } catch {
                Log.release()
                throw error
            }
        case nil:
            try launchExec(o)
        }
    }

    /// Opens the cache and the store and resolves the environment (the writable layer's pinned
    /// revision, the mount point and log defaults); checks what must hold before serving.
    static func open(_ options: MountOptions) throws -> (MountOptions, any ObjectStore, ChunkCache, OpenedEnvironment) {
        var o = options
        let cache = try ChunkCache(directory: o.cacheDir!, limit: o.cacheSize, deferScan: true)
        let store = try StoreFactory.open(o.store, options: o.storeOptions)
        o.trust = o.trust.resolved()
        PhaseMarks.mark("mount: cache and store open")
        // `--revision N` mounts an older revision on purpose: the rollback check lets it through
        // (signatures are still required) and does not record it as the newest seen.
        if o.revision != nil { o.trust.allowOlder = true }
        var resolver = EnvironmentResolver(store: store, cache: cache)
        resolver.trust = try o.trust.policy()
        resolver.refTimeout = o.refTimeout
        // A native mount checks the revision's tree before serving it: its seal is read on
        // another core while this one decodes the manifest.
        let preread = o.native && ProcessControl.userID == 0 ? SealPreread(cacheDirectory: cache.directory) : nil
        if let preread { resolver.willLoadManifest = { id in preread.start(id: id) } }
        var opened = try o.revision.map { try resolver.resolve(env: o.env, revision: $0) } ?? resolver.resolve(env: o.env)
        opened.sealPreread = preread
        PhaseMarks.mark("mount: resolved")
        if let w = o.writable {
            let layer = try WritableLayer(dir: w)
            o.writable = layer.dir
            opened = try layer.pin(opened, storeSpec: o.store, mountpoint: o.mountpoint, resolver: resolver,
                                   announce: true, explicitRevision: o.revision != nil)
        }
        o.env = opened.env
        if o.mountpoint.isEmpty { o.mountpoint = try defaultMountpoint(opened.manifest) }
        o.logFile = o.logFile.map(Mountpoints.absolute) ?? "\(o.cacheDir!)/logs/\(opened.env).log"
        if let p = o.prefetch {
            let key = Profile.objectKey(env: opened.env, manifest: opened.ref.manifest, name: p)
            if !((try? store.exists(key)) ?? false) {
                throw MountError("no profile '\(p)' for \(opened.env) revision \(opened.ref.revision) in \(store.description) (record one with `envmount profile save`)")
            }
        }
        // Refuse a hostile control-socket directory, and name a missing FUSE device or
        // fusermount3, before anything is started.
        try ControlPaths.prepareDirectory()
        do { try FuseSession.preflight(mountpoint: o.mountpoint) } catch let e as FuseMountError { throw MountError(e.description) }
        return (o, store, cache, opened)
    }

    /// The parent of a forked daemon: returns once it reports READY (it has printed what the
    /// mount is); otherwise ends with its status (it has printed why), or stops it at the deadline.
    static func awaitForked(_ child: DaemonFork.Child, _ o: MountOptions) throws {
        let outcome = DaemonFork.wait(child, deadline: readyDeadline)
        PhaseMarks.mark("mount: READY seen")
        switch outcome {
        case .ready:
            return
        case let .exited(code) where code != 0 && code <= 128:
            throw DaemonExit(code)
        case let .exited(code):
            detachStale(o.mountpoint)
            throw MountError(code == 0 ? "the mount daemon (pid \(child.pid)) exited before the mount answered"
                                       : "the mount daemon (pid \(child.pid)) was ended by signal \(code - 128) before the mount answered")
        case .timedOut:
            let how = Subprocess.stop(child.pid)
            detachStale(o.mountpoint)
            throw MountError("the mount daemon (pid \(child.pid)) did not answer within \(Int(readyDeadline)) s; \(how) (its log: \(o.logFile ?? "\(o.cacheDir ?? ChunkCache.defaultDirectory())/logs/"))")
        }
    }

    /// A daemon stopped by force leaves its mount behind, answering ENOTCONN.
    static func detachStale(_ mountpoint: String) {
        guard !mountpoint.isEmpty, let m = Mountpoints.find(mountpoint), m.fsType == "fuse.envmount" else { return }
        _ = Mountpoints.fusermountUnmount(mountpoint, lazy: true)
    }

    /// Where this process already runs threads (it cannot fork safely): the daemon is this
    /// executable started again (`envmount daemon`), given the resolved mount on stdin.
    static func launchExec(_ options: MountOptions) throws {
        let (o, _, _, opened) = try open(options)
        let handoff = DaemonHandoff(options: o, manifest: opened.ref.manifest.hex, offline: opened.offline)
        PhaseMarks.mark("mount: launching")
        let exe = String(decoding: try FS.readlink("/proc/self/exe".pathBytes), as: UTF8.self)
        let pid: Int32
        do {
            pid = try DaemonLauncher.launch(executable: exe, arguments: ["daemon"], input: Array(try JSONEncoder().encode(handoff)),
                                            deadline: readyDeadline)
        } catch let e as DaemonLauncher.Failed {
            detachStale(o.mountpoint)
            throw MountError(e.timedOut ? e.description + " (its log: \(o.logFile!))" : e.description)
        }
        PhaseMarks.mark("mount: READY seen")
        reportRelocation(opened.manifest, mountpoint: o.mountpoint, relocate: o.relocate)
        Console.out(mountedLine(o, opened, pid: pid))
    }

    /// What `envmount mount` prints once the mount answers.
    static func mountedLine(_ o: MountOptions, _ opened: OpenedEnvironment, pid: Int32) -> String {
        "mounted \(opened.env) revision \(opened.ref.revision) at \(o.mountpoint) (\(opened.manifestSummary); pid \(pid), log \(o.logFile ?? "-"))"
    }

    /// The daemon: reads its DaemonHandoff from stdin and serves until unmounted.
    public static func runChild() throws {
        PhaseMarks.mark("daemon: start")
        ProcessControl.ignoreSIGPIPE()
        ProcessControl.newSession()
        let stdin = FileDescriptor(rawValue: 0)
        guard !Console.isTerminal(0), let handoff = try? JSONDecoder().decode(DaemonHandoff.self, from: Data(try stdin.readAll())) else {
            throw MountError("`envmount daemon` is started by `envmount mount`, which gives it the mount's description on stdin; use `envmount mount`")
        }
        if let null = try? FileDescriptor.open("/dev/null", O_RDONLY) {
            try? null.dup2(to: 0)
            null.close()
        }
        let o = handoff.options
        guard let env = o.env, let cacheDir = o.cacheDir, let manifest = ChunkID(hex: handoff.manifest) else {
            throw MountError("incomplete daemon description on stdin")
        }
        let cache = try ChunkCache(directory: cacheDir, limit: o.cacheSize, deferScan: true)
        let store = try StoreFactory.open(o.store, options: o.storeOptions)
        var resolver = EnvironmentResolver(store: store, cache: cache)
        resolver.trust = try o.trust.policy()
        resolver.refTimeout = o.refTimeout
        var opened = try o.revision.map { try resolver.resolve(env: env, revision: $0) }
            ?? resolver.resolved(env: env, manifest: manifest, offline: handoff.offline)
        PhaseMarks.mark("daemon: resolved")
        if let w = o.writable {
            opened = try WritableLayer(dir: w).pin(opened, storeSpec: o.store, mountpoint: o.mountpoint, resolver: resolver,
                                                   announce: false, explicitRevision: o.revision != nil)
        }
        try serve(o, store: store, cache: cache, opened: opened, announce: .execChild)
    }

    /// A mount point must be an existing directory that nothing is mounted on. A stale FUSE
    /// mount (its daemon was killed: "Transport endpoint is not connected") is detached first.
    static func prepareMountpoint(_ mp: String) throws -> String {
        if !FS.surelyNotMountRoot(mp), let m = Mountpoints.find(mp), let overlay = EnvOverlay.of(m) {
            // An overlay mount whose daemon is gone: the overlay and the dead FUSE mount under it.
            let lower = overlay.fuseLower
            let lowerAlive = Mountpoints.find(lower) != nil && (try? FS.fileSystemType(lower)) != nil
            if lowerAlive { throw MountError("\(mp) is already a mount point (envmount \(overlay.env)); unmount it first") }
            Console.error("envmount: \(mp) is a stale envmount mount (its daemon is gone); detaching it")
            try? FS.lazyUnmount(mp)
            if Mountpoints.find(lower) != nil { try? FS.lazyUnmount(lower) }
        }
        if !FS.surelyNotMountRoot(mp), let m = Mountpoints.find(mp) {
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
    /// A non-root mount asks for `auto_unmount`: fusermount3 (which mounts for a user) then
    /// stays as a watchdog and unmounts if the daemon dies, so a killed daemon leaves no stale
    /// mount that only root could detach.
    static func fuseOptions(_ o: MountOptions, env: String, uid: UInt32 = ProcessControl.userID,
                            fuseConf: String = "/etc/fuse.conf", hidden: Bool = false) -> [String] {
        let fsname = (hidden ? WritableLayer.lowerSourcePrefix : WritableLayer.overlaySourcePrefix) + env
        var options = ["ro", "default_permissions", "fsname=\(fsname)", "subtype=envmount"]
        if uid == 0 || userAllowOther(fuseConf) { options.append("allow_other") }
        if uid != 0 { options.append("auto_unmount") }
        if o.fuseDebug { options.append("debug") }
        return options
    }

    static func userAllowOther(_ path: String) -> Bool {
        guard let b = try? FS.readFile(path) else { return false }
        return String(decoding: b, as: UTF8.self).split(separator: "\n")
            .contains { $0.trimmingWhitespace(newlines: false) == "user_allow_other" }
    }

    /// Serves the mount in this process until it is unmounted or signalled.
    static func serve(_ o: MountOptions, store: any ObjectStore, cache: ChunkCache, opened: OpenedEnvironment,
                      announce: Announce) throws {
        let mp = o.mountpoint
        let log = o.logFile ?? "\(cache.directory)/logs/\(opened.env).log"
        let manifest = opened.manifest
        let fetcher = ChunkFetcher(store: store, cache: cache, manifest: manifest,
                                   describe: { [manifest] chunk in describeChunk(manifest, chunk) })
        let pool = FetchPool(fetcher: fetcher, manifest: manifest, threads: o.fetchThreads)
        let streamWindow = o.streamWindow(for: store.traits)
        fetcher.onDemandMiss { [pool] k in
            pool.follow(k)
            pool.streamReadAhead(after: k, window: streamWindow)
        }
        var ra = ReadAheadConfig()
        ra.maxChunks = o.readAheadChunks
        ra.initialChunks = min(2, o.readAheadChunks)
        let recorder = AccessRecorder(chunkCount: manifest.chunks.count)
        let relocated = o.relocate ? RelocatedFiles.make(manifest: manifest, mountpoint: mp.pathBytes) : nil
        let fs = EnvFilesystem(manifest: manifest, fetcher: fetcher, pool: pool, readAhead: o.readAheadChunks > 0 ? ra : nil,
                               relocated: relocated, onChunkRead: { recorder.record($0) })
        let fuseOps = FuseOpCounters()
        PhaseMarks.mark("daemon: fs ready")
        let service = MountService(mountpoint: mp, opened: opened, store: store, cache: cache, fs: fs,
                                   fetcher: fetcher, pool: pool, recorder: recorder, fuseOps: fuseOps)
        // Started before the kernel mount, so the profile's chunks are under way by READY.
        var config = FuseConfig()
        config.readAheadKB = o.readAheadKB
        config.entryTimeout = o.kernelCacheTimeout
        config.attrTimeout = o.kernelCacheTimeout
        config.keepCache = o.keepCache
        config.splice = o.splice
        config.zeroMessageOpen = o.zeroMessageOpen
        // A writable layer, or a materialized tree of this revision (served by the kernel from the
        // cache), puts an overlay at the mount point; the FUSE mount then sits under it, hidden.
        let layer = try o.writable.map { try WritableLayer(dir: $0) }
        let tree = MaterializedTree(cacheDirectory: cache.directory, manifest: manifest, id: opened.ref.manifest, preread: opened.sealPreread)
        // Overlayfs is root's: other users' mounts neither build nor serve trees. A relocated
        // mount puts its relocation layer above the tree (NativeServing.lowers).
        let nativeAllowed = o.native && ProcessControl.userID == 0
        let (nativeLowers, treeNotes, treeContents) = nativeAllowed
            ? NativeServing.lowers(tree, relocated: relocated, mountpoint: mp, fetcher: fetcher) : ([], [], nil)
        let native = !nativeLowers.isEmpty
        PhaseMarks.mark("daemon: tree checked")
        let nativeSummary = native ? NativeServing.summary(tree, contents: treeContents, lowers: nativeLowers, relocated: relocated) : nil
        service.setNative(nativeSummary)
        // A complete materialized tree serves every file from local disk: prefetching the profile
        // through the chunk cache would only re-read and re-hash cached chunks beside the
        // workload. Its bytes are read ahead from the tree into the page cache instead, for a
        // workload that starts with the page cache cold (NativeReadAhead). A partial tree leaves
        // files to FUSE, so it does both. Started before the kernel mount, so the profile is
        // under way by READY.
        let skipChunkPrefetch = nativeSummary?.partial == false
        let profileName = o.prefetch ?? (o.prefetchDefault ? "default" : nil)
        let prefetch = skipChunkPrefetch ? nil : profileName.map {
            ProfilePrefetch(name: $0, explicit: o.prefetch != nil, service: service)
        }
        let nativeReadAhead = native ? profileName.map { name in
            NativeReadAhead.begin(profile: name, tree: tree, contents: treeContents, service: service)
        } : nil
        let treeWarmer = skipChunkPrefetch ? NativeReadAhead(root: tree.path, manifest: manifest) : nil
        if let treeWarmer { service.setTreeWarmer(treeWarmer) }
        // A plain root mount gets an overlay too, in front of FUSE (FrontOverlay): it keeps
        // Python's isatty IOCTLs away from the daemon.
        let frontWanted = layer == nil && !native && o.frontOverlay && ProcessControl.userID == 0
        let frontUnavailable = frontWanted ? FrontOverlay.unavailable() : nil
        let front = frontWanted && frontUnavailable == nil
        let frontDir = front ? FrontOverlay.directory(for: mp) : nil
        let lowers = frontDir.map { [$0] } ?? nativeLowers
        let overlaid = layer != nil || native || front
        let fuseMountpoint = layer?.lower ?? (overlaid ? EnvOverlay.hiddenLower(for: mp) : mp)
        if let layer { try layer.prepare() } else if overlaid {
            EnvOverlay.detachOrphans(at: fuseMountpoint)
            try FS.makeDirectories(fuseMountpoint, mode: 0o700)
        }
        if let frontDir { try FrontOverlay.prepare(frontDir, root: manifest.entries[0]) }
        let session: FuseSession
        do {
            session = try FuseSession(fs: FuseBridge(fs), mountpoint: fuseMountpoint,
                                      options: fuseOptions(o, env: opened.env, hidden: overlaid), config: config,
                                      counters: fuseOps)
        } catch let e as FuseMountError {
            pool.stop()
            throw MountError(e.description)
        }
        // A FUSE-served mount that prefetches a profile fills the kernel's caches ahead of the
        // workload (the names and small files of the profile).
        let primer = o.primeKernel && !native
            ? prefetch.map { p in
                let primer = KernelPrimer(fs: fs, notifier: session.notifier, root: fuseMountpoint)
                // Reported from when it has a profile to follow (none when the profile is absent).
                p.whenQueued { job, chunks in
                    service.setPrimer(primer.stats)
                    primer.start(profile: chunks, fetcher: fetcher, jobFinished: { job.isFinished })
                }
                return primer
            } : nil
        let env = opened.env, revision = opened.ref.revision, wantNative = nativeAllowed
        let overlayFailed = LayerFailure()
        let ourOverlay = Atomic<Int>(0)
        PhaseMarks.mark("daemon: fuse mounted")
        let materializer = NativeServing.Materializer(tree: tree, fetcher: fetcher, cache: cache, relocated: relocated, mountpoint: mp)
        let overlayWatcher = overlaid && layer == nil ? FrontOverlay.Watcher(mountpoint: mp, lower: fuseMountpoint) : nil
        let record = WritableLayer.Record(store: o.store, env: env, manifest: opened.ref.manifest, revision: revision)
        let rc = session.run(onReady: {
            if overlaid {
                do {
                    try EnvOverlay.mount(env: env, at: mp, lowers: lowers + [fuseMountpoint], layer: layer)
                    ourOverlay.store(FS.mountID(mp) ?? Mountpoints.find(mp)?.id ?? 0, ordering: .relaxed)
                    if let layer, (try? layer.readRecord()) == nil { try layer.writeRecord(record) }
                } catch {
                    Console.error("envmount: \(error)")
                    overlayFailed.set()
                    EnvOverlay.unmount(at: mp)
                    try? FS.unmount(fuseMountpoint)
                    return
                }
            }
            PhaseMarks.mark("daemon: overlay mounted")
            primer?.mounted()
            // The cache's count of its entries, put off until the mount answers.
            defer { cache.startScan() }
            overlayWatcher?.start()
            do { try service.startControlSocket() } catch {
                Log.error("control socket unavailable (status, warm and profile will not reach this mount): \(error)")
            }
            switch announce {
            case .foreground:
                Console.error("envmount: serving \(env) revision \(revision) at \(mp); unmount or Ctrl-C to stop")
            case .execChild:
                Console.out("READY")
                redirectToLog(log)
            case let .forked(ready):
                // What the parent of a re-executed daemon prints, printed here before READY lets
                // the parent exit, so it comes first on the terminal.
                reportRelocation(manifest, relocated, mountpoint: mp, relocate: o.relocate)
                Console.out(mountedLine(o, opened, pid: ProcessControl.pid))
                redirectToLog(log)
                Log.release()
                ready.signal()
            }
            Log.info("mounted \(env) revision \(revision) at \(mp), pid \(ProcessControl.pid)")
            for line in relocationLines(manifest, relocated, relocate: o.relocate, listLimit: .max) { Log.info(line) }
            if skipChunkPrefetch, let p = profileName { Log.info("profile \(p) not prefetched through FUSE: every file is served natively (its bytes are read ahead from the tree)") }
            prefetch?.logWhenKnown()
            for note in treeNotes { Log.error(note) }
            if let why = frontUnavailable { Log.error("no overlay in front of the FUSE mount (\(why)); Python's isatty calls reach the daemon") }
            NativeServing.accountTrees(cache)
            if let n = nativeSummary {
                Log.info("serving \(n.files) of \(n.totalFiles) files natively from \(nativeLowers.joined(separator: " over "))")
            } else if wantNative {
                materializer.start()
            }
        }, beforeUnmount: {
            // Only the overlay this daemon mounted: once `envmount unmount` has taken it down, a
            // new mount may already have put its own at the same path.
            let id = ourOverlay.load(ordering: .relaxed)
            if overlaid && id != 0 { EnvOverlay.unmount(at: mp, id: id) }
        })
        materializer.stop()
        primer?.stop()
        nativeReadAhead?.stop()
        treeWarmer?.stop()
        overlayWatcher?.stop()
        service.stopControlSocket()
        pool.stop()
        if overlaid && layer == nil { try? FS.rmdir(fuseMountpoint.pathBytes) }
        if let frontDir { try? FS.rmdir(frontDir.pathBytes) }
        let cpu = ProcessControl.cpuSeconds()
        Log.info("unmounted \(mp): \(fetcher.stats.summary); peak RSS \(formatBytes(ProcessControl.peakResidentBytes())); "
                 + "CPU \(String(format2: cpu.user)) s user, \(String(format2: cpu.system)) s system; FUSE requests "
                 + fuseOps.snapshot.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        if overlayFailed.isSet { throw DaemonExit(1) }
        if rc != 0 && rc != -SIGTERM && rc != -SIGINT && rc != -SIGHUP { throw DaemonExit(rc < 0 ? 1 : rc) }
    }

    /// How a serving process says it is ready.
    enum Announce {
        /// `--foreground`: a line on stderr, and it stays attached.
        case foreground
        /// Re-executed as `envmount daemon`: READY on stdout, which its parent reads.
        case execChild
        /// Forked by `envmount mount`: the mount's lines on the terminal, then READY on the pipe.
        case forked(DaemonFork.Ready)
    }

    /// Standard output and error go to the daemon's log from here on (the terminal is released).
    static func redirectToLog(_ log: String) {
        if let slash = log.lastIndex(of: "/") { try? FS.makeDirectories(String(log[..<slash])) }
        if let fd = try? FileDescriptor.open(log, O_WRONLY | O_CREAT | O_APPEND, mode: 0o644) {
            try? fd.dup2(to: 1)
            try? fd.dup2(to: 2)
            fd.close()
        }
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
