import FoundationEssentials
import SysKit
import EnvFormat

/// Reads the Python distributions installed in a tree, as `pip freeze` sees them: every
/// `lib/python*/site-packages/*.dist-info` (and legacy `*.egg-info` directory) with its
/// `METADATA`/`PKG-INFO` Name and Version, and for a direct install (PEP 610 `direct_url.json`)
/// the requirement pip would print for it.
public enum PackageScanner {
    public static func scan(root: String, known: KnownDistributions? = nil) -> [Distribution] {
        var out: [String: Distribution] = [:]
        for libDir in ["lib", "Lib"] {
            let lib = root + "/" + libDir
            guard let pythons = try? FS.listDirectory(lib) else { continue }
            var siteDirs: [String] = []
            if libDir == "Lib" { siteDirs.append(lib + "/site-packages") }
            for p in pythons.sorted() where p.hasPrefix("python") { siteDirs.append(lib + "/" + p + "/site-packages") }
            for site in siteDirs {
                guard (try? FS.lstat(site))?.kind == .directory, let names = try? FS.listDirectory(site) else { continue }
                for n in names.sorted() {
                    let meta: String
                    if n.hasSuffix(".dist-info") { meta = "METADATA" } else if n.hasSuffix(".egg-info") { meta = "PKG-INFO" } else { continue }
                    let dir = site + "/" + n
                    if let k = known, k.untouched(dir + "/" + meta), k.untouched(dir + "/direct_url.json"), let d = k.match(directory: n) {
                        out[d.canonicalName] = d
                        continue
                    }
                    guard (try? FS.lstat(dir))?.kind == .directory, let bytes = try? FS.readFile(dir + "/" + meta),
                          var d = parseMetadata(bytes) else { continue }
                    if let du = try? FS.readFile(dir + "/direct_url.json") { applyDirectURL(du, to: &d) }
                    out[d.canonicalName] = d
                }
            }
        }
        return out.values.sorted { $0.name.lowercased() < $1.name.lowercased() }
    }

    /// The distribution a `NAME-VERSION.dist-info` (or `NAME-VERSION-pyX.Y.egg-info`) directory
    /// name stands for, among `packages`: same canonical name, same version.
    static func match(directory: String, in packages: [Distribution]) -> Distribution? {
        let stem = directory.lastIndex(of: ".").map { directory[..<$0] } ?? directory[...]
        let parts = stem.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
        let name = Distribution.canonicalize(String(parts[0])), version = String(parts[1])
        return packages.first { $0.canonicalName == name && $0.version == version }
    }

    /// Name and Version from the header block of a METADATA/PKG-INFO file.
    static func parseMetadata(_ bytes: [UInt8]) -> Distribution? {
        var name: String?, version: String?
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false) {
            let l = line.hasSuffix("\r") ? line.dropLast() : line
            if l.isEmpty { break }
            if name == nil, l.hasPrefix("Name:") { name = l.dropFirst(5).trimmingCharacters(in: " \t") }
            if version == nil, l.hasPrefix("Version:") { version = l.dropFirst(8).trimmingCharacters(in: " \t") }
        }
        guard let name, let version, !name.isEmpty else { return nil }
        return Distribution(name: name, version: version)
    }

    struct DirectURL: Decodable {
        struct VCS: Decodable { var vcs: String; var commit_id: String }
        struct Archive: Decodable { var hash: String? }
        struct Dir: Decodable { var editable: Bool? }
        var url: String
        var vcs_info: VCS?
        var archive_info: Archive?
        var dir_info: Dir?
        var subdirectory: String?
    }

    /// The requirement pip 23 prints for a direct install (`direct_url_as_pep440_direct_reference`),
    /// or, for an editable one, `-e PATH` after pip's comment line (the source tree's VCS cannot be
    /// seen from the environment, so it is written as pip does for a source without one).
    static func applyDirectURL(_ bytes: [UInt8], to d: inout Distribution) {
        guard let du = try? JSONDecoder().decode(DirectURL.self, from: Data(bytes)) else { return }
        d.url = du.url
        if du.dir_info?.editable == true {
            d.editable = true
            var path = du.url
            if path.hasPrefix("file://") { path = percentDecode(String(path.dropFirst("file://".count))) }
            d.requirement = "# Editable install with no version control (\(d.name)==\(d.version))\n-e \(path)"
            return
        }
        var req = d.name + " @ "
        var fragments: [String] = []
        if let v = du.vcs_info {
            req += "\(v.vcs)+\(du.url)@\(v.commit_id)"
        } else {
            req += du.url
            if let h = du.archive_info?.hash { fragments.append(h) }
        }
        if let s = du.subdirectory { fragments.append("subdirectory=" + s) }
        if !fragments.isEmpty { req += "#" + fragments.joined(separator: "&") }
        d.requirement = req
    }

    static func percentDecode(_ s: String) -> String {
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "%"), i + 2 < b.count, let v = UInt8(String(decoding: b[i + 1...i + 2], as: UTF8.self), radix: 16) {
                out.append(v)
                i += 3
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The lines `pip freeze` prints for these distributions, in its order (by name, ignoring
    /// case), leaving out what pip leaves out: pip itself, and before Python 3.12 setuptools,
    /// distribute and wheel.
    public static func freeze(_ packages: [Distribution], python: String?) -> String {
        var skip: Set<String> = ["pip"]
        let parts = (python ?? "").split(separator: ".").compactMap { Int($0) }
        if parts.count < 2 || (parts[0], parts[1]) < (3, 12) { skip.formUnion(["setuptools", "distribute", "wheel"]) }
        return packages.filter { !skip.contains($0.canonicalName) }
            .sorted { $0.name.lowercased() < $1.name.lowercased() }
            .map { $0.requirement + "\n" }.joined()
    }
}

/// Distributions known from a base revision, for a publish of a writable mount: a dist-info
/// directory whose METADATA and direct_url.json the layer did not touch is the base's, found by
/// the name and version its directory name spells, and nothing of it is read.
public struct KnownDistributions {
    public var packages: [Distribution]
    /// Whether the file at this absolute path is as in the base revision.
    public var untouched: (String) -> Bool

    public init(packages: [Distribution], untouched: @escaping (String) -> Bool) {
        self.packages = packages
        self.untouched = untouched
    }

    func match(directory: String) -> Distribution? { PackageScanner.match(directory: directory, in: packages) }
}
