import ArgumentParser
import EnvDaemon
import EnvCache
import Glibc
import SysKit

/// `envmount cache …`: look after the local chunk cache shared by all mounts.
struct CacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache",
        abstract: "Show, prune, clear or verify the local chunk cache.",
        discussion: """
            Every mount on this machine keeps the chunks it fetched (verified, uncompressed) in one \
            cache directory, plus the manifests and refs that let an environment mount again without \
            its store. The size limit is a per-mount option: each mount evicts the least recently \
            used chunks to stay under its own limit. These commands work on the directory directly \
            and are safe while mounts run (a chunk removed here is fetched again when next read).

            Examples:
              envmount cache show
              envmount cache prune --size 20G
              envmount cache verify --cache-dir /mnt/nvme/envmount
            """,
        subcommands: [Show.self, Prune.self, Clear.self, Verify.self],
        defaultSubcommand: Show.self)
}

/// `--cache-dir`, shared by the cache subcommands.
struct CacheDirOption: ParsableArguments {
    @Option(help: "Chunk cache directory (default: $XDG_CACHE_HOME/envmount or ~/.cache/envmount; /var/cache/envmount for root).")
    var cacheDir: String?

    var path: String { Mountpoints.absolute(cacheDir ?? ChunkCache.defaultDirectory()) }

    /// Opens the cache, or exits with a message when there is none at the path.
    func open() throws -> ChunkCache {
        let p = path
        guard FS.exists(p + "/" + ChunkCache.layoutVersion) else {
            Console.error("envmount: no chunk cache at \(p)")
            throw ExitCode.failure
        }
        do {
            return try ChunkCache(directory: p, durable: true)
        } catch {
            Console.error("envmount: cannot open the chunk cache at \(p): \(error)")
            throw ExitCode.failure
        }
    }
}

extension CacheCommand {
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show",
            abstract: "Show what the cache holds and the free space on its disk.",
            discussion: """
                Prints the number of cached chunks and their bytes, the cached manifests and \
                environments, and the space left on the cache's file system. The size limit is not \
                stored in the cache: it is set per mount.
                """)

        @OptionGroup var cache: CacheDirOption

        func run() throws {
            let p = cache.path
            guard FS.exists(p + "/" + ChunkCache.layoutVersion) else {
                Console.out("cache:      \(p) (empty: nothing cached yet)")
                return
            }
            let c = try cache.open()
            let u = c.usage
            let root = p + "/" + ChunkCache.layoutVersion
            let manifests = ((try? FS.listDirectory(root + "/manifests")) ?? []).count
            let stores = (try? FS.listDirectory(root + "/refs")) ?? []
            let envs = stores.reduce(0) { $0 + ((try? FS.listDirectory("\(root)/refs/\($1)"))?.count ?? 0) }
            Console.out("cache:      \(p)")
            Console.out("chunks:     \(u.entries) entries, \(formatBytes(u.bytes)) (\(u.bytes) bytes)")
            Console.out("manifests:  \(manifests), refs for \(envs) environment\(envs == 1 ? "" : "s") from \(stores.count) store\(stores.count == 1 ? "" : "s")")
            if let free = try? FS.freeBytes(p) {
                Console.out("disk free:  \(formatBytes(free)) on the cache's file system")
            }
            Console.out("limit:      set per mount; none is stored in the cache")
        }
    }

    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "prune",
            abstract: "Evict least recently used chunks until the cache holds at most SIZE.",
            discussion: """
                SIZE is a byte count with an optional unit: 100000, 500M, 20G, 1.5G, 64MiB, 10GB \
                (K, M, G, T and KiB, MiB, … are powers of 1024; KB, MB, GB, … powers of 1000). \
                Only chunks are counted and removed; manifests and refs are kept.
                """)

        @Option(help: "Keep at most this many bytes of chunks (e.g. 20G, 500M, 64MiB).",
                transform: { s in
                    do { return try ByteSize.parse(s) } catch { throw ValidationError("\(error)") }
                })
        var size: UInt64

        @OptionGroup var cache: CacheDirOption

        func run() throws {
            let c = try cache.open()
            let before = c.usage
            let r = c.prune(to: size)
            let after = c.usage
            Console.out("pruned \(r.entries) entries (\(formatBytes(r.bytes))); "
                + "the cache held \(before.entries) entries (\(formatBytes(before.bytes))), now \(after.entries) (\(formatBytes(after.bytes)))")
        }
    }

    struct Clear: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "clear",
            abstract: "Remove every cached chunk (with --all, also cached manifests and refs).",
            discussion: """
                Chunks are fetched again from the store when next read. Without --all the cached \
                manifests and refs stay, so environments still mount when their store is offline \
                (their chunks then need the store). Mounts keep running; files they have open stay \
                readable.
                """)

        @OptionGroup var cache: CacheDirOption

        @Flag(help: "Also remove the cached manifests and refs (offline mounts then need the store).")
        var all = false

        func run() throws {
            let c = try cache.open()
            let t = CachedTrees.clear(cache.path)
            let r = c.clear(includeMetadata: all)
            Console.out("removed \(r.entries) chunks (\(formatBytes(r.bytes)))\(all ? " and the cached manifests and refs" : "")")
            if t.removed + t.kept > 0 { Console.out("removed \(t.removed) materialized trees" + (t.kept > 0 ? "; kept \(t.kept) that mounts serve" : "")) }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Re-hash every cached chunk and remove those whose bytes do not match their id.",
            discussion: """
                Reads every chunk (without changing its last-use time) and compares its SHA-256 \
                with its name; bad entries are removed and will be fetched again when read. Prints \
                progress on standard error, then the counts. Exits with status 1 if any entry was bad.
                """)

        @OptionGroup var cache: CacheDirOption

        func run() throws {
            let c = try cache.open()
            let tty = Console.isTerminal(2)
            var last: UInt64 = 0
            let r = c.verify { v in
                let now = ProcessControl.monotonicNs()
                if v.checked == 0 {
                    Console.error("verifying \(v.total) chunks in \(cache.path)")
                } else if tty && (now - last > 100_000_000 || v.checked == v.total) {
                    last = now
                    Console.write(2, "\r\(v.checked)/\(v.total) chunks, \(formatBytes(v.bytes)), \(v.bad) bad\u{1b}[K")
                    if v.checked == v.total { Console.write(2, "\n") }
                }
            }
            Console.out("checked \(r.checked) chunks (\(formatBytes(r.bytes))): \(r.good) good, \(r.bad) bad (removed)"
                + (r.vanished > 0 ? ", \(r.vanished) removed meanwhile by a mount" : ""))
            let t = CachedTrees.verify(cache.path)
            if t.checked > 0 { Console.out("checked \(t.checked) materialized trees: \(t.bad) damaged") }
            if r.bad > 0 || t.bad > 0 { throw ExitCode(1) }
        }
    }
}
