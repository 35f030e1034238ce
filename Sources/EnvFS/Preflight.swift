// Preflight: compares what an environment needs (facts recorded in its manifest at publish)
// with this machine, before anything is fetched: the base interpreter, the CPU architecture and
// newest GLIBC version of its ELF files, and the NVIDIA driver its CUDA wheels need.
import EnvFormat
import SysKit

public struct Preflight {
    public struct Finding: Sendable, Equatable {
        public enum Level: Comparable, Sendable { case ok, warning, failure }
        public var level: Level
        public var text: String
    }

    public static func run(_ m: Manifest, machine: String = SystemInfo.machine(), glibc: String = SystemInfo.glibcVersion(),
                    nvidiaVersionFile: String = "/proc/driver/nvidia/version") -> [Finding] {
        var out = [interpreter(m)]
        if let archs = m.metadataValue("elf.machine") {
            let list = archs.split(separator: ",").map(String.init)
            out.append(list.contains(machine)
                ? Finding(level: .ok, text: "ELF files are for \(archs), like this machine")
                : Finding(level: .failure, text: "its ELF files are built for \(archs) and this machine is \(machine); publish the environment from a \(machine) machine"))
        }
        if let need = m.metadataValue("elf.glibc") {
            out.append(compareVersions(need, glibc) <= 0
                ? Finding(level: .ok, text: "needs glibc \(need), this machine has \(glibc)")
                : Finding(level: .failure, text: "its ELF files need glibc \(need) and this machine has \(glibc); use an image with glibc \(need) or newer (Ubuntu 22.04 has 2.35, 24.04 has 2.39), or build the environment on an older distribution"))
        }
        if let cuda = m.metadataValue("cuda.version"), let min = m.metadataValue("cuda.driver.min") {
            let full = m.metadataValue("cuda.driver.full") ?? min
            if let driver = nvidiaDriver(nvidiaVersionFile) {
                if compareVersions(driver, min) < 0 {
                    out.append(Finding(level: .failure, text: "CUDA \(cuda) wheels need NVIDIA driver \(min) or newer, this machine has \(driver); install driver \(full) or newer"))
                } else if compareVersions(driver, full) < 0 {
                    out.append(Finding(level: .warning, text: "CUDA \(cuda) wheels run on driver \(driver) through minor-version compatibility, but PTX JIT needs \(full) or newer"))
                } else {
                    out.append(Finding(level: .ok, text: "CUDA \(cuda) wheels, NVIDIA driver \(driver)"))
                }
            } else {
                out.append(Finding(level: .warning, text: "no NVIDIA driver on this machine (\(nvidiaVersionFile) is missing): the CUDA \(cuda) wheels will find no GPU; install NVIDIA driver \(full) or newer"))
            }
        }
        return out
    }

    /// The interpreter a venv's bin/python leads to: bundled, inside the tree, or on this machine.
    public static func interpreter(_ m: Manifest) -> Finding {
        let version = m.metadataValue("python.version") ?? ""
        let mm = version.split(separator: ".").prefix(2).joined(separator: ".")
        if let b = m.metadataValue("python.bundled") {
            return Finding(level: .ok, text: "Python \(version) is bundled in \(b)")
        }
        // Follow bin/python's symlinks inside the tree until they leave it.
        var path = Array("bin/python".utf8)
        for _ in 0..<16 {
            guard let i = m.resolve(path) else { break }
            let e = m.entries[i]
            if e.kind == .regular { return Finding(level: .ok, text: "the interpreter is inside the environment (/\(String(decoding: path, as: UTF8.self)))") }
            guard e.kind == .symlink else { break }
            let t = m.symlinkTarget(i)
            if t.first == UInt8(ascii: "/") {
                let target = String(decoding: t, as: UTF8.self)
                if t.starts(with: m.sourcePath + [UInt8(ascii: "/")]) {
                    path = Array(t.dropFirst(m.sourcePath.count + 1))
                    continue
                }
                if let st = try? FS.stat(target), st.kind == .regular, st.mode & 0o111 != 0 {
                    return Finding(level: .ok, text: "the base interpreter \(target) is on this machine")
                }
                return Finding(level: .failure, text: "the base interpreter \(target) (bin/python's target) is not on this machine; publish with --with-python, or install Python \(mm.isEmpty ? version : mm) at \(target)")
            }
            path = Array(path.split(separator: UInt8(ascii: "/")).dropLast().joined(separator: [UInt8(ascii: "/")])) + [UInt8(ascii: "/")] + t
        }
        if let home = m.metadataValue("python.home") {
            let exe = home + "/python" + mm
            if FS.exists(exe) { return Finding(level: .ok, text: "the base interpreter \(exe) is on this machine") }
            return Finding(level: .failure, text: "the base interpreter in \(home) (pyvenv.cfg home) is not on this machine; publish with --with-python, or install Python \(mm) at \(exe)")
        }
        return Finding(level: .ok, text: "no bin/python in the environment; no interpreter to check")
    }

    /// The driver version in /proc/driver/nvidia/version ("… Kernel Module  535.104.05  …").
    public static func nvidiaDriver(_ file: String) -> String? {
        guard let b = try? FS.readFile(file) else { return nil }
        let text = String(decoding: b, as: UTF8.self)
        for word in text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }) {
            let parts = word.split(separator: ".")
            if parts.count >= 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) }), let major = Int(parts[0]), major >= 100 {
                return String(word)
            }
        }
        return nil
    }

    /// Compares dotted numeric versions ("2.35" < "2.36", "535.104.05" > "525.60.13").
    public static func compareVersions(_ a: String, _ b: String) -> Int {
        let x = a.split(separator: ".").map { Int($0) ?? 0 }, y = b.split(separator: ".").map { Int($0) ?? 0 }
        for k in 0..<max(x.count, y.count) {
            let p = k < x.count ? x[k] : 0, q = k < y.count ? y[k] : 0
            if p != q { return p < q ? -1 : 1 }
        }
        return 0
    }
}
