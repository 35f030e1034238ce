// Starting the daemon. `envmount mount` re-executes itself (`envmount daemon`, hidden) in a new
// session, writes the whole mount description to the child's stdin as JSON and waits for the
// line READY on the child's stdout, which the child writes only once statfs on the mount point
// shows the FUSE magic. The wait has a deadline that is enforced with poll(2): a daemon that
// neither answers nor fails in time is killed, by its PID, and the user is told.
import Foundation
import Glibc
import SysKit

enum DaemonLauncher {
    struct Failed: Error, CustomStringConvertible {
        let description: String
        /// The daemon was stopped at the deadline (rather than failing on its own).
        var timedOut = false
    }

    /// Starts `executable` with `arguments`, `input` on its stdin, and waits up to `deadline`
    /// seconds for READY on its stdout. Returns its PID. On failure the error is what the child
    /// wrote to stderr (the "envmount: " prefix dropped), or why it was stopped.
    static func launch(executable: String, arguments: [String], input: [UInt8], deadline: Double) throws -> Int32 {
        // A child that exits without reading its input must not kill this process with SIGPIPE.
        ProcessControl.ignoreSIGPIPE()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        let inPipe = Pipe(), out = Pipe(), err = Pipe()
        p.standardInput = inPipe
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let pid = p.processIdentifier
        // The description is small (a few KiB), far below a pipe's 64 KiB, so this cannot block.
        let inFD = FileDescriptor(rawValue: inPipe.fileHandleForWriting.fileDescriptor)
        try? inFD.writeAll(input)
        try? inPipe.fileHandleForWriting.close()
        let outFD = FileDescriptor(rawValue: out.fileHandleForReading.fileDescriptor)
        let errFD = FileDescriptor(rawValue: err.fileHandleForReading.fileDescriptor)
        var seenOut: [UInt8] = [], seenErr: [UInt8] = []
        var outOpen = true, errOpen = true
        let end = ProcessControl.monotonicNs() + UInt64(deadline * 1e9)
        while outOpen || errOpen {
            let now = ProcessControl.monotonicNs()
            if now >= end {
                let how = stop(p)
                throw Failed(description: "the mount daemon (pid \(pid)) did not answer within \(Int(deadline)) s; \(how)", timedOut: true)
            }
            let wait = Int32(min((end - now) / 1_000_000 + 1, 1000))
            let ready = try FileDescriptor.waitReadable([outFD, errFD], milliseconds: wait)
            if outOpen && ready[0] {
                let b = (try? outFD.readSome()) ?? []
                if b.isEmpty { outOpen = false } else { seenOut += b }
                if String(decoding: seenOut, as: UTF8.self).contains("READY\n") { return pid }
            }
            if errOpen && ready[1] {
                let b = (try? errFD.readSome()) ?? []
                if b.isEmpty { errOpen = false } else if seenErr.count < 1 << 16 { seenErr += b }
            }
            // Both closed: the child exited (or closed them) without READY.
            if !outOpen && !errOpen { break }
        }
        if p.isRunning { _ = stop(p) } else { p.waitUntilExit() }
        let msg = String(decoding: seenErr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            .replacingOccurrences(of: "envmount: ", with: "")
        let status = p.isRunning ? "" : " (status \(p.terminationStatus))"
        throw Failed(description: msg.isEmpty ? "the mount daemon (pid \(pid)) exited before the mount answered\(status)" : msg)
    }

    /// SIGTERM (libfuse then unmounts), SIGKILL after 3 s; says which it took.
    static func stop(_ p: Process) -> String {
        let pid = p.processIdentifier
        kill(pid, SIGTERM)
        let end = ProcessControl.monotonicNs() + 3_000_000_000
        while p.isRunning && ProcessControl.monotonicNs() < end { usleep(20_000) }
        if !p.isRunning { return "stopped it (SIGTERM)" }
        kill(pid, SIGKILL)
        p.waitUntilExit()
        return "killed it (SIGKILL)"
    }
}
