import AWSClient
import CarbonModel
import CarbonStore
import CarbonStoreAWS
import CarbonStoreTestSupport
import Foundation
import Testing

/// S3 and DynamoDB against moto with IAM enforcement: every request is signed and authorised
/// with the engine's least-privilege policy.
@Suite(AWSTestEnvironment.enabled) struct S3StoreTests {
    static func txn(_ id: String) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: 1_700_000_000_000),
            amount: Money(minorUnits: 100, currency: CurrencyCode("EUR")!))
    }

    @Test func conditionalWritesAreTheFence() async throws {
        let env = try AWSTestEnvironment.get()
        let prefix = AWSTestEnvironment.uniquePrefix("fence")
        let store = try await env.store(env.s3URI(prefix: prefix, locking: "none"))
        let key = prefix + "aa/bb/x.cstore"
        #expect(try await store.storage.get(key) == nil)
        let v1 = try await store.storage.put(key, bytes: [1, 2, 3], condition: .mustNotExist)
        await #expect(throws: VersionMismatchError.self) {
            try await store.storage.put(key, bytes: [9], condition: .mustNotExist)
        }
        let v2 = try await store.storage.put(key, bytes: [4, 5], condition: .mustMatch(v1))
        #expect(v1 != v2)
        await #expect(throws: VersionMismatchError.self) {
            try await store.storage.put(key, bytes: [9], condition: .mustMatch(v1))
        }
        await #expect(throws: VersionMismatchError.self) {
            try await store.storage.delete(key, condition: .mustMatch(v1))
        }
        let read = try await store.storage.get(key)
        #expect(read?.bytes == [4, 5] && read?.version == v2)
        #expect(try await store.storage.delete(key, condition: .mustMatch(v2)))
        #expect(try await store.storage.get(key) == nil)
    }

    @Test(arguments: ["dynamo", "none"])
    func concurrentTasksLoseNothing(locking: String) async throws {
        let env = try AWSTestEnvironment.get()
        let prefix = AWSTestEnvironment.uniquePrefix("tasks-\(locking)")
        let store = try await env.store(env.s3URI(prefix: prefix, locking: locking))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for t in 0..<4 {
                group.addTask {
                    for a in 0..<8 {
                        try await store.update("shared") { try $0.upsert(Self.txn("t\(t)-\(a)")) }
                    }
                }
            }
            try await group.waitForAll()
        }
        let record = try await store.get("shared")
        #expect(record.transactions.count == 32)
        #expect(record.revision == 32)
        #expect(try await env.lockItems(namespacePrefix: "s3://\(env.bucket)/\(prefix)").isEmpty)
    }

    /// Listing under a prefix sends '/' in query values, which moto with IAM enforcement verifies
    /// wrongly (see scripts/with_moto.sh); this runs on the server without enforcement.
    @Test func listingPagesThroughUsersUnderThePrefix() async throws {
        var env = try AWSTestEnvironment.get()
        env.endpoint = try AWSTestEnvironment.openEndpoint()
        let prefix = AWSTestEnvironment.uniquePrefix("list")
        let store = try await env.store(env.s3URI(prefix: prefix, locking: "none"))
        var ids = Set((0..<23).map { "user-\($0)" })
        ids.insert("../../etc/passwd")
        ids.insert("Ωμέγα@example.com")
        for id in ids { try await store.update(id) { try $0.upsert(Self.txn("t")) } }
        var seen: [String] = []
        var cursor: String?
        repeat {
            let page = try await store.listUsers(after: cursor, limit: 5)
            seen += page.userIDs
            cursor = page.cursor
        } while cursor != nil
        #expect(seen.count == ids.count && Set(seen) == ids)
        #expect(try await store.delete("user-3") == .deleted)
        #expect(try await store.read("user-3") == nil)
    }

    @Test func listingIsAuthorisedByThePolicy() async throws {
        // One page, no prefix and no start-after: nothing moto's enforcement mis-verifies.
        let env = try AWSTestEnvironment.get()
        let store = try await env.store("s3:\(env.bucket)?locking=none&endpoint=\(env.endpoint)")
        try await store.update("lister") { try $0.upsert(Self.txn("t")) }
        let page = try await store.listUsers(after: nil, limit: 1000)
        #expect(page.userIDs.contains("lister"))
    }

    @Test func serverSideEncryptionIsRequested() async throws {
        let env = try AWSTestEnvironment.get()
        let prefix = AWSTestEnvironment.uniquePrefix("sse")
        let store = try await env.store(env.s3URI(prefix: prefix, extra: "&sse=AES256"))
        try await store.update("enc") { try $0.upsert(Self.txn("t")) }
        let clients = try await env.backends().clients(region: env.region, endpoint: env.endpoint)
        let object = try await clients.s3.getObject(bucket: env.bucket, key: try store.keys.key(for: "enc"))
        #expect(object?.serverSideEncryption == "AES256")
    }

    /// On the moto server without IAM enforcement: with enforcement on, moto cannot serve
    /// presigned URLs (see scripts/with_moto.sh). The signature itself is checked against botocore's
    /// vectors in AWSSigningTests.
    @Test func presignedURLIsAcceptedByTheServer() async throws {
        var env = try AWSTestEnvironment.get()
        env.endpoint = try AWSTestEnvironment.openEndpoint()
        let prefix = AWSTestEnvironment.uniquePrefix("presign")
        let store = try await env.store(env.s3URI(prefix: prefix, locking: "none"))
        try await store.update("pia") { try $0.upsert(Self.txn("t")) }
        let key = try store.keys.key(for: "pia")
        let clients = try await env.backends().clients(region: env.region, endpoint: env.endpoint)
        let url = try await clients.s3.presignedURL(method: "GET", bucket: env.bucket, key: key, expires: 300)
        // A plain HTTP GET, no signing: the URL carries the signature.
        let plain = AsyncHTTPTransport.shared
        let response = try await plain.send(HTTPRequest(method: "GET", url: url), timeout: .seconds(5))
        #expect(response.status == 200)
        #expect(try await store.storage.get(key)?.bytes == response.body)
        #expect(
            url.query?.contains("X-Amz-Signature=") == true
                && url.query?.contains("X-Amz-Expires=300") == true)
        // A presigned PUT uploads without credentials.
        let putURL = try await clients.s3.presignedURL(
            method: "PUT", bucket: env.bucket, key: prefix + "upload.bin", expires: 300)
        let put = try await plain.send(
            HTTPRequest(method: "PUT", url: putURL, body: [1, 2, 3]), timeout: .seconds(5))
        #expect(put.status == 200)
        #expect(
            try await clients.s3.getObject(bucket: env.bucket, key: prefix + "upload.bin")?.body == [1, 2, 3])
    }
}
