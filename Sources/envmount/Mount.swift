import ArgumentParser
import EnvCache
import EnvDaemon
import SysKit

struct Mount: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount an environment from a store.",
        discussion: """
            Returns once the mount answers; a daemon keeps serving it in the background (its log: \
            --log-file). With --foreground the command serves until unmounted or sent SIGTERM/SIGINT. \
            A non-root user can mount wherever fusermount3 allows (a directory the user owns); other \
            users can read such a mount only with user_allow_other in /etc/fuse.conf.
            """)

    @Argument(help: "The store: a directory, file:///dir, s3://bucket/prefix, or http(s)://…")
    var store: String

    @Argument(help: "The directory to mount on (default: the path the environment was published from, created if missing). Any other path works too: files that name the source path are presented with this path instead.")
    var mountpoint: String?

    @Option(help: "Environment to mount (may be left out when the store holds one).")
    var env: String?

    @Option(help: "Mount this recorded revision instead of the current one, on purpose (see `envmount ls`).")
    var revision: UInt64?

    @Option(help: "Chunk cache directory, shared by all mounts (default: ~/.cache/envmount, /var/cache/envmount for root).")
    var cacheDir: String?

    @Option(help: "Most disk space for cached chunks, e.g. 20G or 500M; least recently used chunks are evicted (default: no limit; a full disk still evicts).")
    var cacheSize: String?

    @Flag(help: "Stay attached and serve in this process (for systemd and debugging).")
    var foreground = false

    @Option(help: "Daemon log file (default: CACHE_DIR/logs/ENV.log).")
    var logFile: String?

    @OptionGroup var storeArguments: StoreArguments

    @OptionGroup(title: "Trust") var trustArguments: TrustArguments

    @Option(help: "Kernel read-ahead and largest FUSE read in KiB (4...16384).")
    var readAheadKb: Int = 1024

    @Option(help: "Seconds the kernel caches names and attributes (the tree never changes).")
    var kernelCacheTimeout: Double = 86400

    @Flag(help: "Do not let the kernel keep file pages between opens (for measurements).")
    var noKeepCache = false

    @Flag(help: "Copy cached bytes through user space instead of splicing them (for measurements).")
    var noSplice = false

    @Flag(help: "While the profile is prefetched, do not list its directories and put its small files into the kernel's caches ahead of the workload (for measurements).")
    var noPrime = false

    @Flag(help: "Answer OPEN/OPENDIR (the kernel otherwise skips them after the first ENOSYS; for measurements).")
    var withOpen = false

    @Option(help: "Chunks fetched in parallel in the background (read-ahead, warm, prefetch; 1...256).")
    var fetchThreads: Int = 16

    @Option(help: "Most chunks a sequential reader fetches ahead of itself (0: no read-ahead; at most 256).")
    var readAheadChunks: Int = 16

    @Option(help: "Chunks of the path-ordered stream fetched after each chunk a reader misses (default: 32 for remote stores (s3://, http(s)://), 0 for a local directory, which has no latency to hide; off while a profile is prefetched).")
    var streamReadAhead: Int?

    @Option(help: "Start fetching this recorded profile in the background once mounted (default: profile `default`, which envpublish records, when the store has one for this revision; see `envmount profile save`). A mount served natively from a materialized tree reads the profile's files from the tree into the page cache instead.")
    var prefetch: String?

    @Flag(help: "Do not prefetch profile `default` (nor, on a native mount, read it ahead from the tree).")
    var noPrefetch = false

    @Flag(help: "Log every FUSE request (libfuse's debug output; with --foreground).")
    var fuseDebug = false

    @Flag(help: "Present every file exactly as published, even when mounted at another path than the source path.")
    var noRelocate = false

    @Option(help: ArgumentHelp("Put a local writable layer in DIR over the environment (overlayfs; root only): pip install and uninstall work, the published environment stays read-only underneath. The layer persists across remounts with the same DIR and keeps the revision it was made over; `envmount reset` discards it.", valueName: "DIR"))
    var writable: String?

    @Flag(help: "Serve every file through FUSE even when this revision is materialized in the cache, and do not materialize it (for measurements).")
    var noNative = false

    @Flag(help: "Mount a plain (not writable, not native) root mount as FUSE alone, without the read-only overlay in front that keeps Python's isatty IOCTLs from the daemon (for measurements).")
    var noFrontOverlay = false

    /// The flags as one MountOptions; every mount option is a field there.
    func options() throws -> MountOptions {
        var o = MountOptions(store: store, mountpoint: mountpoint ?? "")
        o.env = env
        o.revision = revision
        o.cacheDir = cacheDir
        o.cacheSize = try cacheSize.map { s in
            do { return try ByteSize.parse(s) } catch { throw MountError("--cache-size: \(error)") }
        }
        o.logFile = logFile
        o.storeOptions = storeArguments.options
        o.refTimeout = storeArguments.refTimeout
        o.trust = trustArguments.options
        o.readAheadKB = readAheadKb
        o.kernelCacheTimeout = kernelCacheTimeout
        o.keepCache = !noKeepCache
        o.splice = !noSplice
        o.zeroMessageOpen = !withOpen
        o.primeKernel = !noPrime
        o.fetchThreads = fetchThreads
        o.readAheadChunks = readAheadChunks
        o.streamReadAhead = streamReadAhead
        o.prefetch = prefetch
        o.prefetchDefault = !noPrefetch
        o.fuseDebug = fuseDebug
        o.relocate = !noRelocate
        o.writable = writable.map(Mountpoints.absolute)
        o.native = !noNative
        o.frontOverlay = !noFrontOverlay
        return o
    }

    func validate() throws {
        do { try options().validate() } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        do {
            try MountDaemon.mount(try options(), foreground: foreground)
        } catch let e as DaemonExit {
            throw ExitCode(e.code)
        } catch {
            Console.error("envmount: \(error)")
            throw ExitCode.failure
        }
    }
}

/// The background half of `envmount mount`, started by it with the mount's description on stdin.
struct Daemon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Serve a mount (started by `envmount mount`; not for direct use).", shouldDisplay: false)

    func run() throws {
        do {
            try MountDaemon.runChild()
        } catch let e as DaemonExit {
            throw ExitCode(e.code)
        } catch {
            Console.error("envmount: \(error)")
            throw ExitCode.failure
        }
    }
}
