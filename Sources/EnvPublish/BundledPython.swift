// --with-python: the venv's base interpreter (the installation pyvenv.cfg's `home` belongs to)
// is published inside the environment under one reserved top-level name, and a relocation
// prefix maps its old path there, so the mount's pyvenv.cfg, bin/python* and the
// interpreter's RUNPATH point into the mount.
import SysKit
import EnvFormat

public struct BundledPython: Sendable {
    public static let directoryName = ".envmount-python"

    /// The installation's prefix, resolved (e.g. /root/.pyenv/versions/3.11.7).
    public var prefix: String
    /// The prefix as pyvenv.cfg spells it, when that differs (a symlinked ~/.pyenv).
    public var spelled: String?
    public var version: String
    /// Paths under the prefix left out: the base site-packages (a venv without
    /// include-system-site-packages never sees them) and the standard library's test suite.
    public var excluded: [PathBytes]

    /// Finds the base installation of the venv at `source`; refuses a system /usr.
    public static func locate(source: String) throws -> BundledPython {
        guard let cfg = try? FS.readFile(source + "/pyvenv.cfg") else {
            throw PublishError.interpreter("\(source) has no pyvenv.cfg, so there is no base interpreter to bundle; "
                + "a prefix environment (a conda env, a pyenv or uv interpreter's own prefix) already holds its Python: publish it without --with-python")
        }
        var home: String?, version = "", systemSite = false
        for line in String(decoding: cfg, as: UTF8.self).split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: " \t\r") }
            guard kv.count == 2 else { continue }
            switch kv[0] {
            case "home": home = kv[1]
            case "version", "version_info": version = kv[1]
            case "include-system-site-packages": systemSite = kv[1].lowercased() == "true"
            default: break
            }
        }
        guard let h = home, h.hasPrefix("/") else {
            throw PublishError.interpreter("\(source)/pyvenv.cfg names no absolute `home`; cannot find the base interpreter")
        }
        let spelledPrefix = String(h.hasSuffix("/bin") ? h.dropLast(4) : h[...])
        let prefix: String
        do { prefix = try FS.realpath(spelledPrefix) } catch {
            throw PublishError.interpreter("the base interpreter's installation \(spelledPrefix) (pyvenv.cfg home = \(h)) is not readable: \(error)")
        }
        if ["/", "/usr", "/usr/local", "/opt"].contains(prefix) {
            throw PublishError.interpreter("""
                the venv's base interpreter is the system's own Python (\(h)), installed into \(prefix) with the rest of \
                the system, so it cannot be bundled on its own. Build the venv on a self-contained interpreter and publish \
                again with --with-python: pyenv (`pyenv install 3.11`), uv (`uv python install 3.11`, then `uv venv --python 3.11`) \
                or a python-build-standalone build
                """)
        }
        let mm = version.split(separator: ".").prefix(2).joined(separator: ".")
        let libDirs = ((try? FS.listDirectory(prefix + "/lib")) ?? []).filter { $0.hasPrefix("python" + (mm.isEmpty ? "3" : mm)) }
        guard let lib = libDirs.sorted().first(where: { FS.exists(prefix + "/lib/" + $0 + "/os.py") }) else {
            throw PublishError.interpreter("\(prefix) does not look like a Python installation (no lib/python\(mm)/os.py)")
        }
        var excluded = [(prefix + "/lib/" + lib + "/test").pathBytes]
        if !systemSite { excluded.append((prefix + "/lib/" + lib + "/site-packages").pathBytes) }
        return BundledPython(prefix: prefix, spelled: spelledPrefix != prefix ? spelledPrefix : nil,
                             version: version, excluded: excluded)
    }

    /// The relocation prefixes that map the installation's paths into the bundle.
    var relocationPrefixes: [Relocation.Prefix] {
        var p = [Relocation.Prefix(from: prefix.pathBytes, to: Self.directoryName.pathBytes)]
        if let s = spelled { p.append(Relocation.Prefix(from: s.pathBytes, to: Self.directoryName.pathBytes)) }
        return p
    }
}
