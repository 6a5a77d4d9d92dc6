import CarbonServer
import CarbonStore
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Synchronization

/// A service over one store, with a key of each role, for the tests.
struct TestService {
    static let keys: [Role: (key: String, entry: APIKeyEntry)] = Dictionary(
        uniqueKeysWithValues: Role.allCases.map { ($0, APIKeys.newKey(role: $0)) })

    let store: Store
    let configuration: ServerConfiguration
    let metrics = ServerMetrics()
    let drain = DrainState()
    let logs = LogCapture()

    init(store: Store, configure: (inout ServerConfiguration) -> Void = { _ in }) {
        var c = ServerConfiguration()
        c.keys = APIKeys(Self.keys.values.map(\.entry))
        configure(&c)
        self.configuration = c
        self.store = store
    }

    static func memory(_ uri: String = "memory:", configure: (inout ServerConfiguration) -> Void = { _ in })
        async throws -> TestService
    {
        TestService(store: try await StoreFactory().makeStore(uri), configure: configure)
    }

    var api: CarbonAPI {
        CarbonAPI(store: store, configuration: configuration, metrics: metrics, drain: drain)
    }

    var logger: Logger {
        let logs = self.logs
        return Logger(label: "test") { label in
            JSONLogHandler(label: label, level: .info, write: { logs.append($0) })
        }
    }

    /// An application over the router, for HummingbirdTesting.
    func application() -> some ApplicationProtocol {
        CarbonService(api: api, logger: logger).application()
    }

    static func bearer(_ role: Role) -> HTTPFields { [.authorization: "Bearer \(keys[role]!.key)"] }
}

/// Log lines a service wrote, as JSON objects.
final class LogCapture: Sendable {
    private let lines = Mutex<[[UInt8]]>([])
    func append(_ line: [UInt8]) { lines.withLock { $0.append(line) } }
    var objects: [[String: String]] {
        lines.withLock { $0 }.compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0))) as? [String: String]
        }
    }
}
