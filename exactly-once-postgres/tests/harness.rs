//! The throwaway PostgreSQL and the schema: what every other test stands on.

use exactly_once_postgres::testing::TestPostgres;
use exactly_once_postgres::{migrate, SCHEMA_VERSION};

#[tokio::test]
async fn migrate_creates_the_versioned_schema_once_and_survives_a_restart() {
    let Some(pg) = TestPostgres::start("migrate_creates_the_versioned_schema") else {
        return;
    };
    let config = pg.fresh_database().await;
    let (mut client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    assert_eq!(
        migrate(&mut client).await.unwrap(),
        0,
        "a fresh database has no schema"
    );
    assert_eq!(
        migrate(&mut client).await.unwrap(),
        SCHEMA_VERSION,
        "a second call finds it"
    );
    client
        .execute("INSERT INTO exactly_once_sessions (id) VALUES (42)", &[])
        .await
        .unwrap();
    if pg.can_restart() {
        pg.restart();
        assert!(
            client.execute("SELECT 1", &[]).await.is_err(),
            "the restart cut the connection"
        );
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let rows: i64 = client
            .query_one("SELECT count(*) FROM exactly_once_sessions", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 1, "committed rows outlive an immediate restart");
    }
}
