//! etcd as a test touches it from outside the code under test (feature
//! `etcd`): raw writes of garbage a store must survive, and the client
//! itself for tests that set up users and roles.

pub use etcd_client;

/// Runs `work` to its end on a runtime of its own (the tests are
/// synchronous).
pub fn block_on<T>(work: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(work)
}

/// Writes `value` at `key` of the etcd at `url` as is (garbage included),
/// or deletes the key (`None`).
pub fn raw(url: &str, key: &str, value: Option<&str>) {
    block_on(async {
        let mut client = etcd_client::Client::connect([url], None)
            .await
            .unwrap_or_else(|e| panic!("etcd at {url}: {e}"));
        match value {
            Some(value) => drop(client.put(key, value, None).await.unwrap()),
            None => drop(client.delete(key, None).await.unwrap()),
        }
    });
}
