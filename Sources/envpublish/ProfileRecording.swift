// Publish-time start-up profiles: mount the revision just published with an empty cache, run
// workload snippets with the environment's own Python, and store the chunks they read, in
// order, as a profile (`envmount profile save`). Every later mount prefetches profile
// `default`, so the first import on a new machine arrives at full bandwidth without anyone
// recording by hand. The mounting and saving are done by the sibling `envmount` binary.
import EnvPython
import Glibc
import SysKit

struct RecordError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

struct ProfileRecording {
    struct Snippet { var profile: String; var code: String }

    let store: String
    let storeArgs: [String]
    let env: String
    let manifestHex: String
    let revision: UInt64
    let source: String
    let timeout: Double
    let quiet: Bool

    /// `NAME=CODE` names the profile; plain CODE goes to `default`. A NAME is letters, digits,
    /// `-`, `_`, `.` (so `x == 1` or `a=1` inside code is not taken for a name).
    static func parse(_ specs: [String]) -> [Snippet] {
        specs.map { s in
            if let eq = s.firstIndex(of: "=") {
                let name = s[..<eq]
                if !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }),
                   !s[s.index(after: eq)...].hasPrefix("=") {
                    return Snippet(profile: String(name), code: String(s[s.index(after: eq)...]))
                }
            }
            return Snippet(profile: "default", code: s)
        }
    }

    /// envmount from the same directory as this envpublish.
    static func envmountBinary() throws -> String {
        let exe = String(decoding: try FS.readlink("/proc/self/exe".pathBytes), as: UTF8.self)
        let path = String(exe[..<(exe.lastIndex(of: "/") ?? exe.startIndex)]) + "/envmount"
        guard (try? FS.stat(path))?.kind == .regular else {
            throw RecordError("recording a profile needs envmount next to envpublish, and \(path) is missing (install both, or pass --no-record)")
        }
        return path
    }

    func say(_ s: String) { if !quiet { Console.out(s) } }

    /// Records explicit snippets, or (none given) the imports of the top-level packages.
    /// Returns false when something the user asked for failed.
    func run(snippets: [Snippet]) throws -> Bool {
        let envmount = try Self.envmountBinary()
        guard FS.exists(source + "/bin/python") else {
            if snippets.isEmpty { say("profile: \(source) has no bin/python; nothing recorded"); return true }
            throw RecordError("--record needs a Python environment, and \(source)/bin/python is missing")
        }
        let work = "/tmp/envpublish-record-\(ProcessControl.pid)-\(ProcessControl.monotonicNs() % 1_000_000_007)"
        try FS.makeDirectories(work, mode: 0o700)
        defer { try? FS.removeTree(work) }
        if !snippets.isEmpty {
            var ok = true
            var groups: [(String, [String])] = []
            for s in snippets {
                if let i = groups.firstIndex(where: { $0.0 == s.profile }) { groups[i].1.append(s.code) } else { groups.append((s.profile, [s.code])) }
            }
            for (name, codes) in groups {
                ok = try record(name: name, codes: codes.map { ["-c", $0] }, envmount: envmount, work: work + "/" + name) && ok
            }
            return ok
        }
        guard let imports = try probeImports(work: work) else { return true }
        guard !imports.isEmpty else { say("profile: no top-level package imports cleanly; nothing recorded"); return true }
        let driver = """
            import importlib, sys
            for n in sys.argv[1:]:
                try: importlib.import_module(n)
                except BaseException as e: print('envpublish: import', n, 'failed on the mount:', repr(e)[:300])
            """
        say("profile default: recording the imports of \(imports.joined(separator: ", "))")
        return try record(name: "default", codes: [["-c", driver] + imports], envmount: envmount, work: work + "/default")
    }

    /// Which top-level packages import cleanly, each in its own interpreter with a time limit,
    /// tried on the source tree (a local disk, so this costs no fetches).
    func probeImports(work: String) throws -> [String]? {
        let resolver = PackageResolver(root: source)
        var names: [String] = []
        for d in resolver.distributions() {
            for n in resolver.importNames(of: d) where !names.contains(n) { names.append(n) }
        }
        guard !names.isEmpty else { return [] }
        let probe = """
            import concurrent.futures, os, subprocess, sys
            t = float(sys.argv[1])
            def one(n):
                try:
                    r = subprocess.run([sys.executable, '-c', 'import ' + n], capture_output=True, timeout=t)
                    if r.returncode == 0: return n, 'ok'
                    lines = (r.stderr or b'').decode(errors='replace').strip().splitlines()
                    return n, lines[-1][:200] if lines else 'exit %d' % r.returncode
                except subprocess.TimeoutExpired:
                    return n, 'no answer within %g s' % t
            with concurrent.futures.ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as ex:
                for n, r in ex.map(one, sys.argv[2:]):
                    print('PROBE', n, r, flush=True)
            """
        let out = work + "/probe.out"
        let perImport = min(timeout, 120)
        let r = try Subprocess.run(["/usr/bin/env", "PYTHONDONTWRITEBYTECODE=1", "PYTHONNOUSERSITE=1", source + "/bin/python", "-c", probe, "\(perImport)"] + names,
                                   directory: work, outputFile: out, timeoutSeconds: timeout)
        let text = String(decoding: (try? FS.readFile(out)) ?? [], as: UTF8.self)
        guard r.status == 0 else {
            say("profile: cannot run \(source)/bin/python to find what imports (exit \(r.status)\(r.timedOut ? ", timed out" : "")), nothing recorded: \(text.suffix(300))")
            return nil
        }
        var ok: [String] = [], failed: [String] = []
        for line in text.split(separator: "\n") where line.hasPrefix("PROBE ") {
            let parts = line.split(separator: " ", maxSplits: 2)
            guard parts.count == 3 else { continue }
            if parts[2] == "ok" { ok.append(String(parts[1])) } else { failed.append("\(parts[1]) (\(parts[2]))") }
        }
        if !failed.isEmpty { say("profile: left out, they do not import cleanly: \(failed.joined(separator: "; "))") }
        return ok
    }

    /// Mounts the published revision with an empty cache, runs each argument list with the
    /// mount's bin/python, saves the reads as profile `name`, unmounts.
    func record(name: String, codes: [[String]], envmount: String, work: String) throws -> Bool {
        let mnt = work + "/mnt", cache = work + "/cache", log = work + "/envmount.out"
        try FS.makeDirectories(mnt)
        func envmountRun(_ args: [String], timeout: Double = 120) throws -> (Subprocess.Result, String) {
            try? FS.unlink(log)
            let r = try Subprocess.run([envmount] + args, outputFile: log, timeoutSeconds: timeout)
            return (r, String(decoding: (try? FS.readFile(log)) ?? [], as: UTF8.self))
        }
        let (m, mOut) = try envmountRun(["mount", store, mnt, "--env", env, "--revision", "\(revision)", "--cache-dir", cache, "--no-prefetch"] + storeArgs)
        guard m.status == 0 else { throw RecordError("recording profile \(name): envmount mount failed: \(mOut.trimmingWhitespace())") }
        var mounted = true
        defer {
            if mounted {
                if (try? envmountRun(["unmount", mnt]))?.0.status != 0 {
                    _ = try? Subprocess.run(["/bin/fusermount3", "-u", "-z", mnt], timeoutSeconds: 10)
                }
            }
        }
        let (st, stOut) = try envmountRun(["status", mnt, "--json"])
        guard st.status == 0, stOut.contains(manifestHex) else {
            throw RecordError("recording profile \(name): the mount does not serve the manifest just published (\(manifestHex.prefix(16))); was the environment published again meanwhile? \(stOut.prefix(300))")
        }
        var ok = true
        for (i, args) in codes.enumerated() {
            let out = work + "/snippet-\(i).out"
            let r = try Subprocess.run(["/usr/bin/env", "PYTHONDONTWRITEBYTECODE=1", "PYTHONNOUSERSITE=1", mnt + "/bin/python"] + args,
                                       directory: work, outputFile: out, timeoutSeconds: timeout)
            let text = String(decoding: (try? FS.readFile(out)) ?? [], as: UTF8.self)
            for line in text.split(separator: "\n") where line.hasPrefix("envpublish: import") { say("profile \(name): \(line.dropFirst("envpublish: ".count))") }
            if r.status != 0 {
                ok = false
                let what = args.count > 1 ? args[1].prefix(80) : ""
                Console.error("envpublish: recording profile \(name): `\(what)` \(r.timedOut ? "did not finish within \(Int(timeout)) s" : "exited with status \(r.status)"): \(text.trimmingWhitespace().suffix(600))")
            }
        }
        let (s, sOut) = try envmountRun(["profile", "save", mnt, name])
        guard s.status == 0 else { throw RecordError("recording profile \(name): envmount profile save failed: \(sOut.trimmingWhitespace())") }
        let (u, uOut) = try envmountRun(["unmount", mnt])
        if u.status == 0 { mounted = false } else { Console.error("envpublish: unmounting \(mnt): \(uOut.trimmingWhitespace())") }
        say("profile \(name): \(sOut.trimmingWhitespace())")
        return ok
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
