import ArgumentParser
import EnvDaemon
import EnvPython
import FoundationEssentials
import Glibc
import SysKit

struct Warm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warm",
        abstract: "Fetch the hot part of a mounted environment in parallel, ahead of use.",
        discussion: """
            PACKAGE names are Python distributions as pip spells them (case and -/_ do not matter). \
            A distribution's files are the ones its *.dist-info/RECORD lists, and every top-level \
            directory it owns is fetched whole, with the bytecode Python wrote after install \
            (numpy/ with its __pycache__, numpy.libs/). In a directory that several distributions \
            share, such as site-packages/nvidia/, only this one's part is fetched (nvidia/cublas/). \
            --deps adds the installed requirements from its METADATA (Requires-Dist whose \
            environment markers apply; extras are not followed), recursively. \
            --profile fetches the chunks a recorded run read, in the order it read them; --all \
            fetches everything, after which the mount works without the store. On a mount \
            served natively from a complete materialized tree every chunk is on local disk \
            already: warm reads the tree's files of those chunks into the page cache instead \
            (the job is labelled "(page cache)").

            Examples:
              envmount warm /opt/venv torch numpy
              envmount warm /opt/venv torch --deps
              envmount warm /opt/venv --profile import-torch
              envmount warm /opt/venv --all --background
            """)

    @Argument(help: "The mount point.")
    var mountpoint: String

    @Argument(help: "Distributions to fetch.")
    var packages: [String] = []

    @Flag(help: "Also fetch the installed requirements of the named distributions, recursively.")
    var deps = false

    @Flag(help: "Fetch the whole environment (offline-ready when done).")
    var all = false

    @Option(help: "Fetch a recorded access profile.")
    var profile: String?

    @Flag(help: "Return at once; the daemon keeps fetching (see `envmount status`).")
    var background = false

    func validate() throws {
        let modes = (packages.isEmpty ? 0 : 1) + (all ? 1 : 0) + (profile == nil ? 0 : 1)
        if modes != 1 { throw ValidationError("name packages, or --all, or --profile NAME (one of them)") }
        if deps && packages.isEmpty { throw ValidationError("--deps goes with package names") }
    }

    func run() throws {
        let mp = Mountpoints.absolute(mountpoint)
        do {
            var jobs: [JobInfo] = []
            if all {
                jobs = try ControlClient.jobs(mp, .warmAll).jobs
            } else if let p = profile {
                jobs = try ControlClient.jobs(mp, .warmProfile(name: p)).jobs
            } else {
                _ = try ControlClient.status(mp)
                let resolver = PackageResolver(root: mp)
                let dists = resolver.distributions()
                var chosen: [PackageResolver.Distribution] = []
                for p in packages {
                    guard let d = dists.first(where: { $0.normalized == PackageResolver.normalize(p) }) else {
                        let near = resolver.nearMatches(p, in: dists)
                        throw MountError("no package '\(p)' in \(mp)" + (near.isEmpty ? " (\(dists.count) installed; `ls \(resolver.sitePackages().first ?? "lib")`)" : "; did you mean: \(near.joined(separator: ", "))?"))
                    }
                    chosen.append(d)
                }
                if deps {
                    let env = MarkerEnvironment(pythonVersion: resolver.pythonVersion() ?? "3")
                    let closure = resolver.withDependencies(chosen, in: env, installed: dists)
                    let added = closure.dists.dropFirst(chosen.count).map(\.name)
                    Console.out("dependencies: " + (added.isEmpty ? "none installed" : added.joined(separator: ", "))
                                + (closure.notInstalled.isEmpty ? "" : " (required but not installed: \(closure.notInstalled.joined(separator: ", ")))"))
                    chosen = closure.dists
                }
                for d in chosen {
                    let plan = resolver.plan(for: d)
                    let r = try ControlClient.jobs(mp, .warm(paths: plan.paths, label: d.name))
                    jobs += r.jobs
                    if r.missing > 0 {
                        Console.error("\(d.name): \(r.missing) of the files its RECORD lists are not in the environment")
                    }
                }
            }
            if background {
                for j in jobs { Console.out("warming \(j.label): \(j.chunks) chunks, \(formatBytes(j.bytes)) in the background (job \(j.id))") }
                return
            }
            let ok = try WarmProgress(mountpoint: mp, jobs: jobs).wait()
            if all && ok { Console.out("complete: every chunk of \(mp) is cached; it works without the store") }
            if !ok { throw ExitCode.failure }
        } catch let e as ExitCode {
            throw e
        } catch {
            Console.error("envmount: \(error)")
            throw ExitCode.failure
        }
    }
}

/// Polls the daemon for jobs and shows progress: one updating line on a terminal, plain lines otherwise.
struct WarmProgress {
    let mountpoint: String
    let jobs: [JobInfo]

    func wait() throws -> Bool {
        let tty = Console.isTerminal(2)
        var reported = Set<Int>()
        var lastPlain = Date.distantPast
        let ids = jobs.map(\.id)
        var ok = true
        while true {
            let now = try ControlClient.jobs(mountpoint, .jobs(ids: ids)).jobs
            for j in now where j.finished && !reported.contains(j.id) {
                reported.insert(j.id)
                if tty { Console.write(2, "\r\u{1b}[K") }
                let rate = j.seconds > 0 ? Double(j.doneBytes) / j.seconds : 0
                if j.failedChunks > 0 {
                    ok = false
                    Console.out("\(j.label): \(j.failedChunks) of \(j.chunks) chunks failed: \(j.error ?? "")")
                } else {
                    Console.out("\(j.label): \(j.chunks) chunks, \(formatBytes(j.doneBytes)) in \(String(format2: j.seconds)) s (\(formatBytes(UInt64(rate)))/s)")
                }
            }
            if now.allSatisfy(\.finished) { return ok }
            let done = now.reduce(UInt64(0)) { $0 + $1.doneBytes }, total = now.reduce(UInt64(0)) { $0 + $1.bytes }
            let secs = now.map(\.seconds).max() ?? 0
            let rate = secs > 0 ? Double(done) / secs : 0
            let eta = rate > 0 ? Double(total - min(done, total)) / rate : 0
            let active = now.filter { !$0.finished }.map(\.label).joined(separator: ", ")
            let line = "warming \(active): \(formatBytes(done))/\(formatBytes(total)), \(formatBytes(UInt64(rate)))/s, ETA \(Int(eta.rounded())) s"
            if tty {
                Console.write(2, "\r\u{1b}[K" + line)
            } else if Date().timeIntervalSince(lastPlain) >= 2 {
                Console.error(line)
                lastPlain = Date()
            }
            usleep(200_000)
        }
    }
}
