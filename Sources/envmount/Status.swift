import ArgumentParser
import EnvDaemon
import FoundationEssentials
import SysKit

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show what envmount mounts serve: environment, store, cache, fetches, warm jobs, errors.")

    @Argument(help: "A mount point (default: every envmount mount).")
    var mountpoint: String?

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let mps = mountpoint.map { [Mountpoints.absolute($0)] }
            ?? Mountpoints.all().filter(Mountpoints.isEnvmountMount).map(\.mountpoint)
        if mps.isEmpty {
            if json { Console.out("[]") } else { Console.out("no envmount mounts") }
            return
        }
        var infos: [StatusInfo] = []
        var failed = false
        for mp in mps {
            do {
                var s = try ControlClient.status(mp)
                let overlay = Mountpoints.find(mp).flatMap(EnvOverlay.of)
                s.writableLayer = overlay?.layer?.dir
                s.nativeTree = overlay?.nativeTree
                s.materialized = FS.exists("\(s.cacheDir)/v1/trees/\(s.manifest).seal")
                infos.append(s)
            } catch {
                Console.error("envmount: \(error)")
                failed = true
            }
        }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            Console.out(String(decoding: try enc.encode(infos), as: UTF8.self))
        } else {
            for s in infos { Console.out(Self.describe(s)) }
        }
        if failed { throw ExitCode.failure }
    }

    static func describe(_ s: StatusInfo) -> String {
        var lines = [
            "\(s.mountpoint): \(s.env) revision \(s.revision) (manifest \(s.manifest.prefix(16)))\(s.offline ? ", OFFLINE" : "")"
                + (s.signedBy.map { ", signed by key \($0)" } ?? ""),
            "  store     \(s.store)" + (s.storeCheck.map { ": \($0.summary)" } ?? ""),
            "  tree      \(s.entries) entries, \(formatBytes(s.totalBytes)) in \(s.chunks) chunks",
            "  cache     \(s.cacheDir)" + (s.cacheBytes.map { ", \(formatBytes($0)) used" } ?? "")
                + (s.cacheTreeBytes.map { " + \(formatBytes($0)) of materialized trees" } ?? "")
                + (s.cacheLimit.map { " of \(formatBytes($0))" } ?? ""),
            "  fetched   \(s.chunksFetched) chunks, \(formatBytes(s.bytesFetched)) (\(formatBytes(s.rawBytesFetched)) raw) in \(s.requests) requests; \(s.cacheHits) cache hits",
            "  errors    \(s.fetchErrors) fetch errors, \(s.corruptChunks) corrupt chunks refused" + (s.lastError.map { "; last: \($0)" } ?? ""),
            "  daemon    pid \(s.pid), RSS \(formatBytes(s.rssBytes)), \(s.recordedChunks) chunks read (recorded for profiles), \(s.readAheadQueued) read-ahead queued",
        ]
        if let ops = s.fuseOps {
            let list = ops.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            lines.append("  fuse      \(ops.values.reduce(0, +)) requests (\(list.isEmpty ? "none yet" : list))"
                         + (s.fuseReadBytes.map { "; \(formatBytes($0)) read" } ?? "")
                         + (s.fusePushedFiles.map { $0 > 0 ? "; \($0) files (\(formatBytes(s.fusePushedBytes ?? 0))) put into the page cache ahead of reads" : "" } ?? ""))
            if let d = s.primedDirectories, let done = s.primerFinished {
                lines.append("  primer    \(d) directories listed, \(s.fusePushedFiles ?? 0) files stored ahead of the workload\(done ? "; done" : "; under way")")
            }
        }
        if let n = s.demandWaits, let w = s.demandWaitSeconds, let u = s.cpuUserSeconds, let k = s.cpuSystemSeconds {
            lines.append("  waits     \(n) reads waited \(String(format2: w)) s in all for chunk bytes\(s.readerFollows.map { $0 > 0 ? " (queued fetches moved to the reader \($0) times)" : "" } ?? ""); daemon CPU \(String(format2: u)) s user, \(String(format2: k)) s system")
        }
        if let n = s.native {
            lines.insert("  native    \(n.files) \(n.partial ? "of \(n.totalFiles) " : "")files (\(formatBytes(n.bytes))) served by the kernel from \(n.tree); the daemon serves none of them"
                         + (n.partial ? "\n            a partial tree (--cache-size): the other files are served through FUSE" : "")
                         + (n.relocationLayer.map { "\n            \(n.relocatedFiles) relocated files from \($0)" } ?? "")
                         + (s.nativeReadAhead.map { r in
                             r.alreadyCached == true ? "\n            profile \(r.profile): its \(formatBytes(r.plannedBytes)) were in the page cache already; nothing read ahead"
                                 : "\n            profile \(r.profile): \(r.files) files (\(formatBytes(r.bytes)) of \(formatBytes(r.plannedBytes))) read ahead into the page cache\(r.finished ? "; done" : "; under way")" } ?? ""), at: 2)
        } else if let t = s.nativeTree {
            lines.insert("  native    every file served by the kernel from \(t) (all \(formatBytes(s.totalBytes)); the daemon serves none)", at: 2)
        } else {
            lines.insert("  native    none: files are served through FUSE" + (s.materialized == true
                ? " (this revision is now materialized: the next mount serves it natively)"
                : " (materialized once every chunk is cached, e.g. after `envmount warm --all`)"), at: 2)
        }
        if let w = s.writableLayer {
            lines.insert("  writable  \(w) (changes in \(w)/upper; `envmount reset \(s.mountpoint)` discards them)", at: 2)
        }
        for j in s.jobs {
            lines.append("  warm      \(j.label): \(j.doneChunks)/\(j.chunks) chunks, \(formatBytes(j.doneBytes))/\(formatBytes(j.bytes))"
                         + (j.finished ? ", done in \(String(format2: j.seconds)) s" : ", running") + (j.failedChunks > 0 ? ", \(j.failedChunks) failed" : ""))
        }
        return lines.joined(separator: "\n")
    }
}
