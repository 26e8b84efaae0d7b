// tsx's loader, resolved from the project's node_modules (bin/juice imports it by absolute path, so the
// launcher works from any working directory).
import 'tsx';
