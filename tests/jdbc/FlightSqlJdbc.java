// A small JDBC program run by tests/test_flightsql_jdbc.py against a live flight_lake:
// the Arrow Flight SQL JDBC driver (the one DBeaver ships) connects, runs a query and a
// prepared statement, and reads DatabaseMetaData.getTables and getColumns. Each answer
// is printed as one tab-separated line the test checks.
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

public class FlightSqlJdbc {
    public static void main(String[] args) throws SQLException {
        String url = args[0];
        String table = args[1];
        try (Connection connection = DriverManager.getConnection(url)) {
            try (Statement statement = connection.createStatement();
                 ResultSet rows = statement.executeQuery(
                     "SELECT count(*) AS n, max(name) AS top FROM " + table)) {
                while (rows.next()) {
                    System.out.println("query\t" + rows.getLong("n") + "\t" + rows.getString("top"));
                }
            }
            try (PreparedStatement prepared = connection.prepareStatement(
                     "SELECT name FROM " + table + " WHERE name = ? ORDER BY name")) {
                prepared.setString(1, "bob");
                try (ResultSet rows = prepared.executeQuery()) {
                    while (rows.next()) {
                        System.out.println("prepared\t" + rows.getString(1));
                    }
                }
            }
            DatabaseMetaData meta = connection.getMetaData();
            System.out.println("product\t" + meta.getDatabaseProductName());
            try (ResultSet tables = meta.getTables(null, null, "%", null)) {
                while (tables.next()) {
                    System.out.println("table\t" + tables.getString("TABLE_CAT") + "\t"
                        + tables.getString("TABLE_SCHEM") + "\t" + tables.getString("TABLE_NAME")
                        + "\t" + tables.getString("TABLE_TYPE"));
                }
            }
            try (ResultSet columns = meta.getColumns(null, null, table, "%")) {
                while (columns.next()) {
                    System.out.println("column\t" + columns.getString("COLUMN_NAME") + "\t"
                        + columns.getString("TYPE_NAME") + "\t" + columns.getInt("ORDINAL_POSITION"));
                }
            }
            try (Statement statement = connection.createStatement()) {
                statement.executeQuery("SELEC 1");
            } catch (SQLException error) {
                System.out.println("error\t" + error.getMessage().split("\n")[0]);
            }
        }
    }
}
