"""End-to-end recipes as importable Python (installed as genossa.pipelines)."""
