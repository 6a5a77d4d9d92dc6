import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// Hooks for the reliability tests, read from CARBONSTORE_TEST_* variables; none is set in
/// production. They let a test stop, kill or fail a real `carbonstore` process at the worst moment.
///
/// - `CARBONSTORE_TEST_PAUSE_BEFORE_COMMIT_MS=N`: hold the lock for N ms right before the
///   conditional write, so tests can stop or kill a writer there.
/// - `CARBONSTORE_TEST_FILE_FAULT=SPEC`: inject one fault into the file writes of the `path:`
///   backend: `crash:STEP[@N]` exits the process with status 86 at that step of a write (as a power
///   cut of the process, no cleanup); `fail:CALL:ERRNO[@N]` makes that system call fail. See
///   `FileFault` and docs/RELIABILITY.md.
enum TestHooks {
    static func variable(_ name: String) -> String? {
        guard let v = getenv(name), v.pointee != 0 else { return nil }
        return String(cString: v)
    }

    static func apply(to options: inout StoreOptions) throws {
        if let ms = variable("CARBONSTORE_TEST_PAUSE_BEFORE_COMMIT_MS").flatMap(Int64.init) {
            options.beforeCommit = {
                FileHandleStderr.write("carbonstore: pausing \(ms) ms before commit\n")
                try? await Task.sleep(for: .milliseconds(ms))
            }
        }
        if let spec = variable("CARBONSTORE_TEST_FILE_FAULT") {
            let fault = try FileFault(parsing: spec)
            options.fileIO = .injecting(fault, into: options.fileIO, crashMode: .exitProcess)
        }
    }
}
