import Foundation
import Glibc
import SysKit
import XCTest

/// Mount at any path, with the interpreter bundled: a venv built on a pyenv interpreter runs
/// from a mount at another, longer path inside a mount namespace where neither the source venv
/// nor ~/.pyenv exist.
final class RelocationMountTests: MountTestCase {

    static let pyenvVersion = "3.11.7"

    /// ~/.pyenv/versions/3.11.7, which these machines and CI have; its absence fails under CI.
    func pyenvPrefix() throws -> String {
        let home = ProcessControl.environment("HOME") ?? "/root"
        let prefix = "\(home)/.pyenv/versions/\(Self.pyenvVersion)"
        if !FS.exists(prefix + "/bin/python3.11") {
            let why = "needs the pyenv interpreter \(prefix)/bin/python3.11"
            if ProcessControl.environment("CI") != nil { XCTFail(why) }
            throw XCTSkip(why)
        }
        return prefix
    }

    /// A venv (with pip) on the pyenv interpreter, with a package installed from a wheel built
    /// here: `relocprobe` and its console script.
    func makeVenv(_ venv: String, python: String) throws {
        let v = try h.run(python, ["-m", "venv", venv])
        XCTAssertEqual(v.status, 0, v.stderr)
        let wheel = h.dir + "/relocprobe-1.0-py3-none-any.whl"
        let build = """
            import base64, hashlib, sys, zipfile
            files = {
                "relocprobe/__init__.py": "import hashlib\\nVALUE = hashlib.sha256(b'reloc').hexdigest()\\ndef main():\\n    print('probe', VALUE)\\n",
                "relocprobe-1.0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: relocprobe\\nVersion: 1.0\\n",
                "relocprobe-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
                "relocprobe-1.0.dist-info/entry_points.txt": "[console_scripts]\\nrelocprobe = relocprobe:main\\n",
            }
            record = []
            with zipfile.ZipFile(sys.argv[1], "w") as z:
                for name, text in files.items():
                    data = text.encode()
                    z.writestr(name, data)
                    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                    record.append(f"{name},sha256={digest},{len(data)}")
                record.append("relocprobe-1.0.dist-info/RECORD,,")
                z.writestr("relocprobe-1.0.dist-info/RECORD", "\\n".join(record) + "\\n")
            """
        let w = try h.run(python, ["-c", build, wheel])
        XCTAssertEqual(w.status, 0, w.stderr)
        let pip = try h.run(venv + "/bin/pip", ["install", "--no-index", "--no-deps", "--disable-pip-version-check", "-q", wheel])
        XCTAssertEqual(pip.status, 0, pip.stderr)
    }

    /// Runs `script` with sh in a private mount namespace where each of `hidden` is covered
    /// by an empty tmpfs.
    func inNamespace(hiding hidden: [String], _ script: String) throws -> CommandResult {
        let cover = hidden.map { "mount -t tmpfs none '\($0)' || exit 97" }.joined(separator: "\n")
        return try h.run("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/sh", "-c", cover + "\n" + script])
    }

    func testPyenvVenvPublishedWithPythonRunsAtALongerPathWithNoPythonOnTheMachine() throws {
        let prefix = try pyenvPrefix()
        let pyenvRoot = String(prefix[..<prefix.range(of: "/versions/")!.lowerBound])
        let venv = h.dir + "/src/venv", store = h.dir + "/store", cache = h.dir + "/cache"
        try makeVenv(venv, python: prefix + "/bin/python3.11")
        let p = try h.publish(venv, store, ["--env", "bundled", "--with-python"])
        XCTAssertEqual(p.status, 0, p.stderr)
        let plain = try h.publish(venv, store, ["--env", "plain"])
        XCTAssertEqual(plain.status, 0, plain.stderr)

        // Longer than the source path, and past the kernel's 256-byte #! limit: console
        // scripts run through the /bin/sh trampoline.
        let mnt = h.dir + "/mnt/" + String(repeating: "a-longer-mount-point/", count: 13) + "venv"
        try FS.makeDirectories(mnt)
        let out = h.dir + "/out"
        try FS.makeDirectories(out)
        let script = """
            test -e '\(prefix)/bin/python3.11' && exit 98
            test -e '\(venv)/pyvenv.cfg' && exit 99
            for f in /usr/bin/python3* /usr/local/bin/python3*; do [ -f "$f" ] && [ ! -L "$f" ] && mount --bind /dev/null "$f"; done
            for d in /usr/lib/python3*; do [ -d "$d" ] && mount -t tmpfs none "$d"; done
            python3 -c pass 2>/dev/null && exit 95
            '\(h.bin)/envmount' check '\(store)' --env bundled --cache-dir '\(cache)' > '\(out)/check-bundled.txt' 2>&1 || echo "check failed" >> '\(out)/check-bundled.txt'
            '\(h.bin)/envmount' check '\(store)' --env plain --cache-dir '\(cache)' > '\(out)/check-plain.txt' 2>&1; echo "rc=$?" >> '\(out)/check-plain.txt'
            '\(h.bin)/envmount' mount '\(store)' '\(mnt)' --env bundled --cache-dir '\(cache)' > '\(out)/mount.txt' 2>&1 || exit 96
            trap "'\(h.bin)/envmount' unmount '\(mnt)'" EXIT
            '\(mnt)/bin/python' -c 'import sys, relocprobe; print(sys.prefix); print(relocprobe.VALUE)' > '\(out)/python.txt' 2>&1
            '\(mnt)/bin/pip' --version > '\(out)/pip.txt' 2>&1
            '\(mnt)/bin/relocprobe' > '\(out)/probe.txt' 2>&1
            (. '\(mnt)/bin/activate' && echo "$PATH" && command -v python) > '\(out)/activate.txt' 2>&1
            readlink '\(mnt)/bin/python3.11' > '\(out)/link.txt'
            true
            """
        let r = try inNamespace(hiding: [pyenvRoot, venv], script)
        XCTAssertEqual(r.status, 0, "namespace script: \(r.stdout) \(r.stderr)")
        func read(_ f: String) -> String { String(decoding: (try? FS.readFile(out + "/" + f)) ?? [], as: UTF8.self) }
        let expectedValue = "b1d80c4a"   // sha256(b'reloc'), checked below against this machine's python
        let py = read("python.txt").split(separator: "\n").map(String.init)
        XCTAssertEqual(py.first, mnt, "sys.prefix is the mount path: \(read("python.txt"))")
        XCTAssertEqual(py.count, 2, read("python.txt"))
        let hash = try h.run(prefix + "/bin/python3.11", ["-c", "import hashlib; print(hashlib.sha256(b'reloc').hexdigest())"])
        XCTAssertEqual(py.last, hash.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        _ = expectedValue
        XCTAssertTrue(read("pip.txt").hasPrefix("pip "), read("pip.txt"))
        XCTAssertTrue(read("pip.txt").contains(mnt + "/lib/python3.11/site-packages/pip"), read("pip.txt"))
        XCTAssertTrue(read("probe.txt").hasPrefix("probe "), "console script through its shebang: \(read("probe.txt"))")
        let act = read("activate.txt").split(separator: "\n").map(String.init)
        XCTAssertEqual(act.first?.split(separator: ":").first.map(String.init), mnt + "/bin", read("activate.txt"))
        XCTAssertEqual(act.last, mnt + "/bin/python")
        XCTAssertEqual(read("link.txt"), mnt + "/.envmount-python/bin/python3.11\n")
        XCTAssertTrue(read("check-bundled.txt").contains("bundled"), read("check-bundled.txt"))
        XCTAssertFalse(read("check-bundled.txt").contains("check failed"), read("check-bundled.txt"))
        // Without --with-python the check fails and names the interpreter and the fix.
        let cp = read("check-plain.txt")
        XCTAssertTrue(cp.contains("rc=1"), cp)
        XCTAssertTrue(cp.contains("FAIL") && cp.contains(prefix + "/bin/python3.11") && cp.contains("--with-python"), cp)
        XCTAssertTrue(read("mount.txt").contains("relocated from \(venv)"), read("mount.txt"))
        // With the interpreter in place the same check passes.
        let ok = try h.run("envmount", ["check", store, "--env", "plain", "--cache-dir", cache])
        XCTAssertEqual(ok.status, 0, ok.stdout + ok.stderr)

        // Relocated and unrelocated mounts: identical bytes for every file without a prefix.
        let relocated = h.dir + "/mnt-r/venv-elsewhere", asPublished = h.dir + "/mnt-p"
        try h.mount(store, relocated, cache: cache, ["--env", "bundled"])
        try h.mount(store, asPublished, cache: cache, ["--env", "bundled", "--no-relocate"])
        var same = 0, differ = 0
        func walk(_ rel: String) throws {
            for name in try FS.listDirectory(asPublished + rel) {
                let p = rel + "/" + name
                let st = try FS.lstat(asPublished + p)
                if st.kind == .directory { try walk(p); continue }
                guard st.kind == .regular else { continue }
                let a = try FS.readFile(relocated + p), b = try FS.readFile(asPublished + p)
                if a == b { same += 1; continue }
                differ += 1
                let names = [venv, prefix].contains { ByteSearch.occurrences(of: $0.pathBytes, in: b, range: 0..<b.count).count > 0 }
                XCTAssertTrue(names || ElfHead.isElf(b), "\(p) differs but names no prefix")
            }
        }
        try walk("")
        XCTAssertGreaterThan(same, 1000)
        XCTAssertGreaterThan(differ, 5)
        XCTAssertEqual(try FS.readFile(asPublished + "/pyvenv.cfg"), try FS.readFile(venv + "/pyvenv.cfg"), "--no-relocate shows the bytes as published")
        // The interpreter's RUNPATH names its own lib/ by absolute path; mounted, it is $ORIGIN-relative.
        let exe = try FS.readFile(relocated + "/.envmount-python/bin/python3.11")
        XCTAssertTrue(ByteSearch.occurrences(of: Array("$ORIGIN/../lib".utf8) + [0], in: exe, range: 0..<exe.count).count == 1)
        XCTAssertTrue(ByteSearch.occurrences(of: Array((prefix + "/lib").utf8), in: try FS.readFile(asPublished + "/.envmount-python/bin/python3.11"),
                                             range: 0..<exe.count).count >= 1)
    }

    func testTheDefaultMountPointIsTheSourcePath() throws {
        let src = h.dir + "/src/default-tree", store = h.dir + "/store"
        try FS.makeDirectories(src + "/bin")
        let text = Array("#!\(src)/bin/python\nprint('\(src)')\n".utf8)
        try writeFile((src + "/bin/tool").pathBytes, text, mode: 0o755)
        XCTAssertEqual(try h.publish(src, store).status, 0)
        try FS.rename(src, src + ".moved")     // the mount point is created when missing
        let r = try h.run("envmount", ["mount", store, "--cache-dir", h.dir + "/cache"])
        XCTAssertEqual(r.status, 0, r.stderr)
        try h.adopt(src, r)
        XCTAssertTrue(r.stdout.contains(" at \(src) "), r.stdout)
        XCTAssertTrue(Harness.isMounted(src))
        XCTAssertEqual(try FS.readFile(src + "/bin/tool"), text, "at the source path nothing is rewritten")
        XCTAssertFalse(r.stderr.contains("relocated"), r.stderr)
        XCTAssertEqual(try h.unmount(src).status, 0)
    }
}

enum ElfHead {
    static func isElf(_ b: [UInt8]) -> Bool { b.starts(with: [0x7f, 0x45, 0x4c, 0x46]) }
}
