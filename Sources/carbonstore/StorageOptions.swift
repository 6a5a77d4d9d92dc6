import ArgumentParser
import CarbonModel
import CarbonStore
import CarbonStoreAWS

#if canImport(Glibc)
    import Glibc
#endif

/// The options every command that touches storage shares.
struct StorageOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Storage URI (default: $CARBONSTORE_STORAGE, else path:carbonstore-data).", valueName: "uri"))
    var storage: String?

    var uriText: String {
        if let storage { return storage }
        if let env = getenv("CARBONSTORE_STORAGE"), env.pointee != 0 { return String(cString: env) }
        return StorageURI.defaultURI
    }

    func makeStore(configure: (inout StoreOptions) -> Void = { _ in }) async throws -> Store {
        var options = StoreOptions()
        configure(&options)
        return try await AWSBackends().storeFactory(options: options).makeStore(uriText)
    }
}

/// Runs a command body and turns every failure into one line on stderr and an exit code.
func runReportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let exit as ExitCode {
        throw exit
    } catch let error as CarbonStoreError {
        printError(error.description)
        throw ExitCode(exitCode(for: error.kind))
    } catch let error as CleanExit {
        throw error
    } catch {
        printError(String(describing: error))
        throw ExitCode(1)
    }
}

func exitCode(for kind: ErrorKind) -> Int32 {
    switch kind {
    case .invalidInput: return 64
    case .notFound: return 3
    case .conflict: return 4
    case .corrupt: return 5
    case .lockTimeout, .leaseExpired, .unavailable: return 6
    case .storageFailure: return 1
    }
}

func printError(_ message: String) {
    let line = "carbonstore: " + message.replacingNewlines() + "\n"
    FileHandleStderr.write(line)
}

extension String {
    fileprivate func replacingNewlines() -> String {
        String(map { $0 == "\n" ? " " : $0 })
    }
}

/// Reads `--at`: an ISO 8601 time, or now.
func parseTime(_ text: String?, option: String = "--at") throws -> Timestamp {
    guard let text else { return Timestamp.now() }
    guard let t = Timestamp(iso8601: text) else {
        throw InvalidRequestError(
            "\(option) '\(text)' is not an ISO 8601 time; write it like 2026-03-01T09:30:00Z")
    }
    return t
}

func parseCurrency(_ text: String) throws -> CurrencyCode {
    guard let c = CurrencyCode(text) else {
        throw InvalidRequestError("'\(text)' is not an ISO 4217 currency code such as EUR, USD or GBP")
    }
    return c
}

func parseKilograms(_ text: String) throws -> CO2e {
    do { return try CO2e(kilograms: text) } catch { throw InvalidRequestError(error.description) }
}

func parsePeriod(start: String?, end: String?, required: Bool) throws -> Period? {
    switch (start, end) {
    case (nil, nil):
        if required { throw InvalidRequestError("give the period with --period-start and --period-end") }
        return nil
    case (let s?, let e?):
        let period = Period(
            start: try parseTime(s, option: "--period-start"), end: try parseTime(e, option: "--period-end"))
        guard period.start <= period.end else {
            throw InvalidRequestError("--period-start \(s) is after --period-end \(e)")
        }
        return period
    default:
        throw InvalidRequestError("give both --period-start and --period-end, or neither")
    }
}

/// One line saying what an update did.
func report(_ what: String, _ outcome: UpsertOutcome, _ result: UpdateResult<UpsertOutcome>) {
    switch outcome {
    case .inserted: print("added \(what) (revision \(result.record.revision))")
    case .replaced: print("replaced \(what) (revision \(result.record.revision))")
    case .unchanged: print("\(what) already recorded, nothing changed (revision \(result.record.revision))")
    }
}

enum FileHandleStderr {
    static func write(_ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes {
                Glibc.write(2, $0.baseAddress! + offset, $0.count - offset)
            }
            if n <= 0 { break }
            offset += n
        }
    }
}
