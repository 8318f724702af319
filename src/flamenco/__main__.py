from flamenco.cli.main import app

app()
